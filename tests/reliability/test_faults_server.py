"""Faults mid-stream that are the server's behaviour: the output subfolder removed while writing, and a full disk
(the output folder on a 2 MiB tmpfs). Each: a clear error, no temporary file, a finished file of the same name
byte-identical, and the next prompt succeeds."""

from __future__ import annotations

import os
import shutil
import time

from support.graphs import error_message, saved_files, streaming_prompt
from support.process_checks import snapshot
from support.videos import partial_files, read_video

FREE_BYTES = 12 * 1024


def test_output_subfolder_removed_mid_run(rel_client, rel_server):
    output = rel_server.tree.output
    folder = output / "removed"
    # The folder goes once the temporary file is in it. The file appears with the first encoded packet, after the
    # save node's first progress, so the file itself is watched for. A video can end before it is seen (a fast
    # machine), so a longer one is tried then; once the removal lands, the run stops at its next chunk.
    for frames in (129, 1025):  # a caught run stops early, so only a miss pays for the length
        prompt_id = rel_client.queue(streaming_prompt("wan21", filename_prefix="removed/clip",
                                                      latent={"frames": frames}))
        writing = wait_for_temporary_file(rel_client, prompt_id, folder)
        shutil.rmtree(folder, ignore_errors=True)
        run = rel_client.wait(prompt_id, timeout=600)
        if writing:
            break
    assert writing, f"never caught the prompt mid-write, even at {frames} frames: {run.types[-4:]} {run.status}"

    saved = [data["value"] for data in run.of_type("progress") if data["node"] == "save"]
    assert max(saved) < frames, "the video was encoded to its end into the removed folder"
    assert run.status == "error"
    message = error_message(run)
    assert "the output folder was removed while writing" in message and "No file was left behind" in message, \
        message
    assert "Traceback" not in message
    assert not folder.exists(), "the removed folder came back with something in it"
    assert not partial_files(output)
    held = [path for path in snapshot(rel_server.pid)["files"] if "removed" in path]
    assert not held, f"the server still holds the deleted temporary file open: {held}"

    after = rel_client.run_prompt(streaming_prompt("wan21", filename_prefix="removed/clip"), timeout=600)
    assert after.status == "success", after.of_type("execution_error")
    (path,) = saved_files(after, output)
    assert len(read_video(path).frames) == 5


def wait_for_temporary_file(client, prompt_id: str, folder, timeout: float = 600) -> bool:
    """Poll until the writer's temporary file is in folder (True) or the prompt has ended (False)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        if partial_files(folder):
            return True
        polls += 1
        if polls % 50 == 0 and client.get_json(f"/history/{prompt_id}"):
            return False
        time.sleep(0.01)
    raise AssertionError(f"prompt {prompt_id} neither wrote into {folder} nor ended within {timeout:.0f} s")


def test_disk_full_mid_run(tight_client, tight_server):
    """The output folder is a 2 MiB tmpfs, filled up to FREE_BYTES before the prompt: the 9-frame lossless video
    runs out of space part-way. (Measured: a 129-frame ffv1 64x48 video of these VAEs' frames fits in 2 MiB, so
    the disk is made nearly full rather than relying on the video's size.)"""
    view = tight_server.output_view()
    (view / "full").mkdir()
    existing = view / "full" / "clip_00001_.mkv"  # a finished video the user already has, same prefix
    existing.write_bytes(b"finished video" * 1000)
    original = existing.read_bytes()
    filler = view / "filler.bin"
    stats = os.statvfs(view)
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - FREE_BYTES))
    prompt = streaming_prompt("wan21", filename_prefix="full/clip", latent={"frames": 9},
                              container="mkv", codec="ffv1", pix_fmt="bgr0")
    run = tight_client.run_prompt(prompt, timeout=600)

    assert run.status == "error", "the video should not fit in the space left"
    message = error_message(run)
    assert "No space left on device" in message and "free some disk space" in message, message
    assert "No file was left behind" in message
    saved_before_failing = [data["value"] for data in run.of_type("progress") if data["node"] == "save"]
    assert saved_before_failing and max(saved_before_failing) > 0, "the disk filled before streaming began"
    assert existing.read_bytes() == original
    assert sorted(path.name for path in (view / "full").iterdir()) == ["clip_00001_.mkv"]
    assert not [path for path in snapshot(tight_server.pid)["files"] if ".partial" in path]

    filler.unlink()  # the user frees space; the next prompt must work without a restart
    after = tight_client.run_prompt(streaming_prompt("wan21", filename_prefix="full/clip"), timeout=600)
    assert after.status == "success", after.of_type("execution_error")
    (item,) = after.outputs["save"]["images"]
    assert item["filename"] == "clip_00002_.mp4"
    assert len(read_video(view / "full" / item["filename"]).frames) == 5
    assert existing.read_bytes() == original
