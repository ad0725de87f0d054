"""Two clients queueing at once, and a client that drops its WebSocket mid-run: every output still complete, and
the pack's live messages reach only the client that queued the prompt."""

from __future__ import annotations

import threading
import time

from support.graphs import saved_files, streaming_prompt
from support.host_client import HostClient
from support.videos import partial_files, read_video

LONG_FRAMES = 17  # 5 latent frames: long enough to drop the socket in the middle


def test_two_clients_queueing_at_once(rel_server):
    output = rel_server.tree.output
    clients = [HostClient(rel_server.url) for _ in range(2)]
    queued: dict[int, list[str]] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def queue_one(which: int):
        barrier.wait()
        family = ("wan21", "wan22")[which]
        queued[which].append(clients[which].queue(
            streaming_prompt(family, filename_prefix=f"two_clients/c{which}_{family}")))

    threads = [threading.Thread(target=queue_one, args=(which,)) for which in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        paths = []
        for which, client in enumerate(clients):
            for prompt_id in queued[which]:
                run = client.wait(prompt_id, timeout=600)
                assert run.status == "success", run.of_type("execution_error")
                assert run.of_type("streamvae.done"), "the live stats did not reach the client that queued"
                (path,) = saved_files(run, output)
                frames = read_video(path).frames
                assert frames.shape == (5, 48, 64, 3)
                paths.append(path)
        assert len(set(paths)) == 2, "two prompts wrote the same file"
        # Each client saw only its own prompts' messages (ComfyUI sends them to the queueing client_id).
        for which, client in enumerate(clients):
            others = set(queued[1 - which])
            leaked = [m for m in client.events(1.0) if (m.get("data") or {}).get("prompt_id") in others]
            leaked += [prompt_id for prompt_id in client.held_prompt_ids() if prompt_id in others]
            assert not leaked, f"client {which} received the other client's messages: {leaked[:3]}"
    finally:
        for client in clients:
            client.close()
    assert not partial_files(output)


def test_client_disconnecting_mid_run(rel_server):
    output = rel_server.tree.output
    leaving = HostClient(rel_server.url)
    prompt_id = leaving.queue(streaming_prompt("wan21", filename_prefix="disconnected/clip",
                                               latent={"frames": LONG_FRAMES}))
    progress = leaving.wait_for_progress(prompt_id, "save", timeout=600)
    assert progress is not None and progress["value"] < LONG_FRAMES, "the run ended before the socket dropped"
    leaving.close()  # mid-run: the server keeps sending to a client that is gone

    watcher = HostClient(rel_server.url)  # a new connection, as a reconnecting page would make
    try:
        deadline = time.monotonic() + 600
        while (history := watcher.history(prompt_id)) is None or not history.get("status", {}).get("completed"):
            assert time.monotonic() < deadline, "the prompt did not finish after its client left"
            time.sleep(0.5)
        assert history["status"]["status_str"] == "success", history["status"]
        (item,) = history["outputs"]["save"]["images"]
        frames = read_video(output / item["subfolder"] / item["filename"]).frames
        assert len(frames) == LONG_FRAMES
        after = watcher.run_prompt(streaming_prompt("wan21", filename_prefix="after_disconnect/clip"), timeout=600)
        assert after.status == "success"
    finally:
        watcher.close()
    assert not partial_files(output)
