"""The farm on a local Ray cluster with two workers, each a real ComfyUI `--cpu` server with a random-weight Wan 2.1
VAE, running the decode-only workflow: every output once, decoding back to what one plain server makes of the same
latent, the manifest complete; a worker killed mid-job, a worker's ComfyUI killed, a job that fails on its own
input; an S3 destination (a local moto server) with inputs read from the bucket."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from streamvae.farm import Farm, FarmOptions, load_jobs
from streamvae.farm.manifest import Manifest
from support.comfy_server import free_port
from support.farm_jobs import DECODE_ONLY, assert_every_output_once, comfyui_args, job_sets
from support.videos import read_video

WORKFLOW = json.loads(DECODE_ONLY.read_text())


@pytest.fixture(scope="module")
def farm(ray_cluster, farm_host, farm_tree):
    options = FarmOptions(workers=2, cpus_per_worker=1, comfyui=str(farm_host), comfyui_args=comfyui_args(farm_tree),
                          startup_timeout=300)
    with Farm(options) as running:
        yield running


def jobs_for(folder: Path, latents: list[Path], count: int, prefix: str) -> list:
    """count jobs over the latents in turn, written to a job file and read back as the CLI reads it."""
    lines = [json.dumps({"id": f"{prefix}-{number:02d}", "set": job_sets(f"@{latents[number % len(latents)]}")})
             for number in range(count)]
    path = folder / f"{prefix}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job_file = load_jobs(path)
    assert not job_file.bad_lines
    return job_file.jobs


def test_a_dozen_jobs_each_output_once_equal_to_one_server(farm, latents, reference_frames, tmp_path):
    jobs = jobs_for(tmp_path, latents, 12, "clip")
    dest = tmp_path / "out"
    report = farm.run(jobs, WORKFLOW, str(dest))
    assert report.ok and report.done == 12 and report.skipped == 0
    records = assert_every_output_once(dest, jobs, reference_frames)
    # Jobs go to whichever worker is free: on a loaded machine one worker's ComfyUI can start so much later than the
    # other's that the first takes every job, so this names the workers, not a share.
    assert {record["worker"] for record in records.values()} <= {"w1", "w2"}
    assert all(record["attempts"] == 1 for record in records.values())
    table = report.table()
    assert "total" in table and "$/video-h" in table and "videos/h with 2 workers" in table
    # A rerun with the same manifest finds nothing to do.
    again = farm.run(jobs, WORKFLOW, str(dest))
    assert again.done == 0 and again.skipped == 12
    assert len((dest / "manifest.jsonl").read_text().splitlines()) == 12


class KillWhenBusy(threading.Thread):
    """Kills (SIGKILL) the process pid_of(worker) picks, half a second into some job of some worker."""

    def __init__(self, farm: Farm, pid_of):
        super().__init__(daemon=True)
        self.farm, self.pid_of = farm, pid_of
        self.killed: dict = {}

    def run(self):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not self.killed:
            busy = [worker for worker in self.farm.workers if worker.state == "busy"]
            if busy:
                time.sleep(0.5)  # into the job, not at its start; short, since a tiny job takes about a second
                if busy[0].state == "busy":
                    pid = self.pid_of(busy[0])
                    os.kill(pid, signal.SIGKILL)
                    self.killed = {"worker": busy[0].tally.name, "pid": pid}
            time.sleep(0.1)


def run_with_a_kill(farm: Farm, jobs: list, dest: Path, pid_of) -> tuple:
    killer = KillWhenBusy(farm, pid_of)
    killer.start()
    report = farm.run(jobs, WORKFLOW, str(dest))
    killer.join(timeout=5)
    assert killer.killed, "no worker was busy long enough to be killed"
    return report, killer.killed


def test_a_worker_killed_mid_job_is_restarted_and_its_job_done_elsewhere(farm, latents, reference_frames, tmp_path):
    jobs = jobs_for(tmp_path, latents, 4, "kill-worker")
    report, killed = run_with_a_kill(farm, jobs, tmp_path / "out", lambda worker: worker.info["pid"])
    assert report.ok and report.done == 4
    records = assert_every_output_once(tmp_path / "out", jobs, reference_frames)
    assert [record["attempts"] for record in records.values()].count(2) == 1  # the one it held, tried again
    (tally,) = [tally for tally in report.workers if tally.name == killed["worker"]]
    assert tally.deaths == 1
    assert not psutil.pid_exists(killed["pid"])
    # Ray restarts the actor: a new process with a new ComfyUI, ready for the next run.
    farm.wait_ready(timeout=300)
    (worker,) = [worker for worker in farm.workers if worker.tally.name == killed["worker"]]
    assert worker.state == "idle" and worker.info["pid"] != killed["pid"]


def test_a_killed_comfyui_is_started_again_and_its_job_retried(farm, latents, reference_frames, tmp_path):
    jobs = jobs_for(tmp_path, latents, 8, "kill-comfyui")  # enough work that a worker is still busy when it fires
    report, killed = run_with_a_kill(farm, jobs, tmp_path / "out", lambda worker: worker.info["server_pid"])
    assert report.ok and report.done == 8
    records = assert_every_output_once(tmp_path / "out", jobs, reference_frames)
    assert [record["attempts"] for record in records.values()].count(2) == 1
    (tally,) = [tally for tally in report.workers if tally.name == killed["worker"]]
    assert tally.deaths == 1
    (worker,) = [worker for worker in farm.workers if worker.tally.name == killed["worker"]]
    import ray

    info = ray.get(worker.handle.describe.remote())
    assert info["server_restarts"] == 1 and info["server_pid"] != killed["pid"]
    assert info["pid"] == worker.info["pid"]  # the same worker process: only its ComfyUI was replaced


def test_a_job_failing_on_its_own_input_is_recorded_failed_and_the_rest_finish(farm, latents, tmp_path):
    broken = tmp_path / "broken.latent"
    broken.write_bytes(b"not a safetensors file")
    jobs = jobs_for(tmp_path, [latents[0], broken, latents[1]], 3, "mixed")
    dest = tmp_path / "out"
    report = farm.run(jobs, WORKFLOW, str(dest), tries=2)
    assert report.done == 2 and not report.ok
    ((failed_id, error),) = report.failed
    assert failed_id == "mixed-01" and error.startswith("node 1 (LoadLatent) failed: ")
    assert sorted(path.name for path in dest.glob("*.mp4")) == ["mixed-00.mp4", "mixed-02.mp4"]
    record = Manifest(dest / "manifest.jsonl").records()["mixed-01"]
    assert record["status"] == "failed" and record["attempts"] == 2 and record["error"] == error
    # A rerun tries the failed job again (its input may have been fixed) and skips the rest.
    broken.write_bytes(latents[2].read_bytes())
    again = farm.run(load_jobs(tmp_path / "mixed.jsonl").jobs, WORKFLOW, str(dest))
    assert again.ok and again.done == 1 and again.skipped == 2


# ---- S3

@pytest.fixture(scope="module")
def s3_server(farm_host):
    """moto's S3-compatible server on a free loopback port (a real HTTP server, not an in-process mock)."""
    pytest.importorskip("moto", reason='the S3 test needs moto\'s server: pip install "moto[server]"')
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "moto's server did not start"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


def test_s3_destination_with_inputs_from_the_bucket(farm, latents, reference_frames, s3_server, tmp_path):
    import boto3

    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="farm")
    for latent in latents[:2]:
        s3.upload_file(str(latent), "farm", f"in/{latent.name}")
    lines = [{"id": f"s3-{number}", "set": job_sets(f"@s3://farm/in/{latents[number % 2].name}")}
             for number in range(3)]
    lines.append({"id": "s3-missing", "set": job_sets("@s3://farm/in/missing.latent")})
    (tmp_path / "s3.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    manifest = tmp_path / "farm.jsonl"
    report = farm.run(load_jobs(tmp_path / "s3.jsonl").jobs, WORKFLOW, "s3://farm/videos", manifest=manifest,
                      storage_options=options)
    assert report.done == 3
    assert report.failed == [("s3-missing", "input s3://farm/in/missing.latent (for LoadLatent.latent) does not "
                                            "exist")]
    records = Manifest(manifest).records()
    assert records["s3-missing"]["attempts"] == 1  # trying again can't make it appear
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="farm", Prefix="videos/")["Contents"])
    assert keys == ["videos/manifest.jsonl", "videos/s3-0.mp4", "videos/s3-1.mp4", "videos/s3-2.mp4"]
    for number in range(3):
        body = s3.get_object(Bucket="farm", Key=f"videos/s3-{number}.mp4")["Body"].read()
        (output,) = records[f"s3-{number}"]["outputs"]
        assert output == {"location": f"s3://farm/videos/s3-{number}.mp4", "size": len(body),
                          "sha256": hashlib.sha256(body).hexdigest()}
        video = tmp_path / f"s3-{number}.mp4"
        video.write_bytes(body)
        np.testing.assert_array_equal(read_video(video).frames, reference_frames[latents[number % 2].name])
    assert s3.get_object(Bucket="farm", Key="videos/manifest.jsonl")["Body"].read() == manifest.read_bytes()
