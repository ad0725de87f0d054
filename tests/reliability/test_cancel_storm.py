"""Cancel storm on the real server: interrupt prompts at random points (before the save node starts, at its first
chunk, part-way); never a stuck worker, a leaked thread or descriptor, or a file left behind, and the next prompt
succeeds. STREAMVAE_CANCEL_RUNS sets the count (full: 30)."""

from __future__ import annotations

import json
import os
import random

import pytest

from support.graphs import saved_files, streaming_prompt
from support.process_checks import count_from_env, snapshot
from support.videos import partial_files, read_video

pytestmark = pytest.mark.soak

FRAMES = 49  # 13 chunks: room to land an interrupt part-way even when progress reaches the client late


def test_interrupts_at_random_points(rel_client, rel_server):
    output = rel_server.tree.output
    runs = count_from_env("STREAMVAE_CANCEL_RUNS", 4)
    rng = random.Random(int(os.environ.get("STREAMVAE_CANCEL_SEED", "30")))
    warm = rel_client.run_prompt(streaming_prompt("wan21", filename_prefix="storm/warm"), timeout=600)
    assert warm.status == "success"
    before = snapshot(rel_server.pid)
    outcomes = []
    for run_index in range(runs):
        # Where to interrupt: -1 right after queueing (before or while the save node starts), else once the save
        # node has reported at least this many frames.
        point = rng.choice([-1, 0, 1, 5, 9])
        prompt_id = rel_client.queue(streaming_prompt("wan21", filename_prefix=f"storm/run{run_index:02d}",
                                                      latent={"frames": FRAMES}))
        if point >= 0:
            rel_client.wait_for_progress(prompt_id, "save", timeout=600, at_least=point)
        rel_client.interrupt(prompt_id)
        run = rel_client.wait(prompt_id, timeout=600)
        outcomes.append((point, run.status or "?", run.types[-3:]))
        files = sorted((output / "storm").glob(f"run{run_index:02d}*"))
        if "execution_interrupted" in run.types:
            assert not files, f"an interrupted prompt left {files}"
        else:  # the interrupt came after the last chunk: then the video must be whole
            assert run.status == "success", run.types
            (path,) = saved_files(run, output)
            assert len(read_video(path).frames) == FRAMES
        assert not partial_files(output)

    after_run = rel_client.run_prompt(streaming_prompt("wan21", filename_prefix="storm/after"), timeout=600)
    assert after_run.status == "success", after_run.of_type("execution_error")
    (path,) = saved_files(after_run, output)
    assert len(read_video(path).frames) == 5
    after = snapshot(rel_server.pid)
    interrupted = sum("execution_interrupted" in types for _, _, types in outcomes)
    report = {"runs": runs, "interrupted": interrupted, "points": [point for point, _, _ in outcomes],
              "threads": [before["threads"], after["threads"]], "fds": [before["fds"], after["fds"]],
              "rss_mib": [round(before["rss"] / 2**20), round(after["rss"] / 2**20)]}
    print("cancel storm:", json.dumps(report))
    if os.environ.get("STREAMVAE_RELIABILITY_REPORT"):
        with open(os.environ["STREAMVAE_RELIABILITY_REPORT"], "a") as log:
            log.write(json.dumps({"test": "cancel_storm", **report}) + "\n")
    assert interrupted >= 1, outcomes
    assert after["threads"] <= before["threads"] + 2, report
    assert after["fds"] <= before["fds"] + 4, report
    assert not [name for name in after["files"] if str(output) in name]
