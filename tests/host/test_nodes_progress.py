"""Progress per chunk, live messages for the web extension, and /interrupt mid-decode."""

from support.graphs import FRAMES, saved_files, streaming_prompt
from support.videos import partial_files

# 251 latent frames. A tiny decode here takes a few hundredths of a second per chunk, and on a loaded machine the
# server's event loop can deliver progress late, so a short video may end before the interrupt arrives. Stopped
# within a chunk, a long one costs no more than a short one.
LONG_FRAMES = 1001


def test_progress_per_chunk_and_live_messages(comfy_client):
    run = comfy_client.run_prompt(streaming_prompt("wan21", filename_prefix="progress/clip"), timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    bar = [(data["value"], data["max"]) for data in run.of_type("progress") if data["node"] == "save"]
    # One update per decoded chunk (the first latent frame gives 1 frame, each later one 4), and one at the end.
    assert len(bar) >= 2 and bar[-1] == (FRAMES, FRAMES)
    assert all(later[0] >= earlier[0] for earlier, later in zip(bar, bar[1:]))

    live = run.of_type("streamvae.progress")
    assert live and all(data["node"] == "save" and data["frames_total"] == FRAMES for data in live)
    assert live[-1]["frames_done"] == FRAMES
    assert any((data["preview"] or "").startswith("data:image/jpeg;base64,") for data in live)
    (done,) = run.of_type("streamvae.done")
    assert done["frames_done"] == FRAMES and done["frames_per_second"] > 0 and done["realtime_factor"] > 0
    (stats,) = done["files"]
    assert stats["frames"] == FRAMES and stats["encoder"] == "libx264"
    assert "gpu_busy" in done  # None on a CPU; the extension shows n/a
    # Which decoder ran, with the stats: exact mode drives ComfyUI's own Wan module.
    assert done["decoder"] == stats["decoder"] == live[-1]["decoder"] == "host comfy.ldm.wan.vae.WanVAE (exact)"


def test_fast_mode_says_it_ran_our_decoder(comfy_client):
    run = comfy_client.run_prompt(streaming_prompt("wan21", mode="fast", filename_prefix="progress/fast"), timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    (done,) = run.of_type("streamvae.done")
    assert done["decoder"] == done["files"][0]["decoder"] == "streamvae-wan2.1 fp32 (torch)"  # CPU: no Triton
    assert all(data["decoder"] == done["decoder"] for data in run.of_type("streamvae.progress"))


def follow_after_marker(client, prompt_id: str, timeout: float) -> tuple[list, int]:
    """Read raw events until `prompt_id` ends. Returns its messages and how many of its `progress` updates the
    server emitted after the first queue `status` broadcast read here.

    The WebSocket keeps the server's emission order, so an update read after that `status` was emitted after it.
    """
    messages, late, marker_seen = client.take_held(prompt_id), 0, False
    for message in client.events(timeout):
        data = message.get("data") or {}
        if message["type"] == "status":
            marker_seen = True
        if data.get("prompt_id") != prompt_id:
            client.hold(message)
            continue
        messages.append(message)
        late += marker_seen and message["type"] == "progress"
        if message["type"] == "executing" and data.get("node") is None:
            return messages, late
    raise AssertionError(f"prompt {prompt_id} did not end within {timeout:.0f} s")


def test_interrupt_stops_within_a_chunk_and_leaves_no_file(comfy_client, comfy_server):
    output = comfy_server.tree.output
    prompt = streaming_prompt("wan21", filename_prefix="interrupted/clip", latent={"frames": LONG_FRAMES})
    prompt_id = comfy_client.queue(prompt)
    first_progress = comfy_client.wait_for_progress(prompt_id, "save", timeout=300)
    assert first_progress is not None, "the prompt ended before the save node reported progress"
    assert first_progress["value"] < LONG_FRAMES
    comfy_client.interrupt(prompt_id)  # returns once the server has set its interrupt flag
    # Queueing the next prompt makes the server broadcast a `status` message: a marker in the event stream that
    # comes after the flag was set, whatever the machine's load. From then on at most the chunk in flight may
    # still report progress (ComfyUI's progress hook checks the flag before it sends).
    after_id = comfy_client.queue(streaming_prompt("wan21", filename_prefix="after_interrupt/clip"))
    messages, late_updates = follow_after_marker(comfy_client, prompt_id, timeout=300)

    types = [message["type"] for message in messages]
    bar = [m["data"]["value"] for m in messages if m["type"] == "progress" and m["data"]["node"] == "save"]
    assert "execution_interrupted" in types and "execution_success" not in types, (types, bar)
    assert late_updates <= 1, f"{late_updates} progress updates after the interrupt was set: not within a chunk"
    assert max(bar) < LONG_FRAMES, f"the decode ran to the end: {bar}"
    assert not list((output / "interrupted").glob("*")), "no video, complete or partial, may be left"
    assert not partial_files(output)

    after = comfy_client.wait(after_id, timeout=300)
    assert after.status == "success", after.of_type("execution_error")
    (path,) = saved_files(after, output)
    assert path.is_file()
