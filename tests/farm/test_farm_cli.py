"""`python -m streamvae farm` as a user runs it, against the tests' Ray cluster (--address): bad lines stop it with
their line numbers (or are skipped on request); the driver killed mid-run takes its workers and their ComfyUIs with
it, leaves no partial file in DEST, and the same command run again finishes the rest: no job lost, none run
twice (a job finished after its driver died is recorded from its receipt, not run again)."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from streamvae.farm import load_jobs
from streamvae.farm.destination import PARTIAL_FOLDER, RECEIPTS_FOLDER
from support.comfy_server import REPO_ROOT
from support.farm_jobs import assert_every_output_once, comfyui_args, job_sets

DECODE_ONLY_UI = REPO_ROOT / "example_workflows" / "decode_only.json"  # converted on the workers


GOOD_JOBS = 6


def write_job_file(folder: Path, latents: list[Path]) -> Path:
    """Six good jobs, a line that is not JSON (line 4) and a job whose input file is missing (line 8)."""
    lines = [json.dumps({"id": f"cli-{number:02d}", "set": job_sets(f"@{latents[number % len(latents)]}")})
             for number in range(GOOD_JOBS)]
    lines.insert(3, '{"id": "cli-broken", "set": ')
    lines.insert(7, json.dumps({"id": "cli-missing", "set": job_sets("@gone.latent")}))
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def farm_command(jobs: Path, dest: Path, address: str, farm_host: Path, tree, *options: str) -> list[str]:
    """One worker: two ComfyUI starts per run would double this test's time, and the cluster tests cover two."""
    return [sys.executable, "-m", "streamvae", "farm", str(jobs), "--workflow", str(DECODE_ONLY_UI), "--out",
            str(dest), "--address", address, "--workers", "1", "--cpus-per-worker", "1", "--comfyui", str(farm_host),
            "--comfyui-args", shlex.join(comfyui_args(tree)), *options]


def test_bad_lines_stop_the_farm_with_their_line_numbers(ray_cluster, farm_host, farm_tree, latents, tmp_path):
    jobs = write_job_file(tmp_path, latents)
    done = subprocess.run(farm_command(jobs, tmp_path / "out", ray_cluster, farm_host, farm_tree),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert f"{jobs}: 2 bad line(s):" in done.stderr
    assert "line 4: not JSON" in done.stderr
    assert f"line 8: input file gone.latent (for LoadLatent.latent) does not exist: looked at {tmp_path}" \
           in done.stderr
    assert f"pass --skip-bad-lines to run the other {GOOD_JOBS} job(s)" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing started


def wait_for_done_records(manifest: Path, count: int, driver: subprocess.Popen, log: Path, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"the farm ended before it could be killed:\n{log.read_text()[-5000:]}"
        if manifest.exists() and manifest.read_text().count('"status": "done"') >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} jobs done after {timeout:.0f} s:\n{log.read_text()[-5000:]}")


def assert_gone(pids: list[int], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, f"still running {timeout:.0f} s after the driver died: {pids}"
        time.sleep(0.5)


def test_killed_driver_then_rerun_finishes_every_job_once(ray_cluster, farm_host, farm_tree, latents,
                                                          reference_frames, tmp_path):
    jobs = write_job_file(tmp_path, latents)
    dest = tmp_path / "out"
    command = farm_command(jobs, dest, ray_cluster, farm_host, farm_tree, "--skip-bad-lines")
    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_done_records(dest / "manifest.jsonl", 2, driver, log)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    first = log.read_text()
    assert f"going on without them: {GOOD_JOBS} job(s)" in first
    comfyui_pids = [int(pid) for pid in re.findall(r"ready: ComfyUI pid (\d+)", first)]
    assert len(comfyui_pids) == 1, first
    assert_gone(comfyui_pids)  # the workers die with their driver, and take their ComfyUIs along
    # Every video in DEST is whole and accounted for: recorded in the manifest, or (finished after the driver
    # died) left with its receipt, from which the rerun records it instead of running it again.
    recorded = {json.loads(line)["id"] for line in (dest / "manifest.jsonl").read_text().splitlines()}
    receipts = {path.stem for path in (dest / RECEIPTS_FOLDER).glob("*.json")}
    videos = {path.stem: path.stat().st_mtime_ns for path in dest.glob("*.mp4")}
    assert set(videos) == recorded | receipts
    assert {path.name for path in dest.iterdir()} <= {"manifest.jsonl", PARTIAL_FOLDER, RECEIPTS_FOLDER,
                                                      *(f"{job_id}.mp4" for job_id in videos)}

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(recorded)} job(s) finished earlier" in again.stderr
    assert f"farm: {GOOD_JOBS - len(videos)} done, 0 failed, {len(videos)} finished earlier" in again.stdout
    assert f"manifest: {dest / 'manifest.jsonl'}" in again.stdout
    assert {path.stem: path.stat().st_mtime_ns for path in dest.glob("*.mp4") if path.stem in videos} == videos
    assert not (dest / RECEIPTS_FOLDER).exists()
    assert_every_output_once(dest, load_jobs(jobs).jobs, reference_frames)
