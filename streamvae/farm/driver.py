"""The farm's driver: Ray actors as workers, jobs handed to whichever is free, the manifest written as they finish.

    with Farm(FarmOptions(address="auto")) as farm:          # a running Ray cluster; None starts a local one
        report = farm.run(load_jobs("jobs.jsonl").jobs, workflow, "s3://bucket/videos", manifest="farm.jsonl")

Faults, and who handles them:
- a worker process dies (killed, out of memory, its node gone): Ray restarts the actor (max_restarts), which starts
  a new ComfyUI; the job it held goes back to the queue and the next free worker takes it. Ray's own task retry
  would pin the job to the same actor and wait out its restart; the queue hands it to any worker at once.
- a worker's ComfyUI dies: the worker starts a new one and the job goes back to the queue the same way.
- a job fails on its own (a node error, a timeout): it is tried again, up to `tries` tries in all, then recorded
  failed; a job the server refuses or whose input is missing is recorded failed at once. The farm goes on.
- the driver dies: its actors die with it (Ray ties them to it); a rerun with the same manifest skips every job
  recorded done whose output is in DEST, records a job a worker finished after the driver died from the receipt
  it left in DEST (destination.py) instead of running it again, and removes what interrupted copies left.
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..stats import DEFAULT_PRICE_PER_GPU_HOUR
from . import extra
from .destination import Destination
from .jobs import Job
from .manifest import Manifest, manifest_record
from .report import FarmProgress, FarmReport, WorkerTally
from .worker import FarmWorker, WorkerSettings

# Restarts of one worker before it is given up on: a node that keeps killing its worker should not hold jobs forever.
MAX_WORKER_RESTARTS = 3
DEFAULT_TRIES = 3
MANIFEST_NAME = "manifest.jsonl"


class FarmError(Exception):
    """The farm can't start or go on; the message says why and what to do."""


@dataclass
class FarmOptions:
    address: Optional[str] = None  # "auto", "HOST:PORT" or "ray://HOST:10001"; None starts a local Ray
    workers: Optional[int] = None  # default: one per GPU in the cluster (or per cpus_per_worker CPUs)
    cpus_per_worker: Optional[float] = None  # set: CPU workers, ComfyUI --cpu (machines without GPUs)
    comfyui: Optional[str] = None
    comfyui_python: Optional[str] = None
    comfyui_args: tuple = ()
    startup_timeout: float = 600.0


@dataclass
class Worker:
    tally: WorkerTally
    handle: Any
    state: str = "starting"  # starting, idle, busy, dead
    info: dict = field(default_factory=dict)


@dataclass
class Call:
    worker: Worker
    job: Optional[Job] = None  # None: the worker's describe() (its start or restart)
    tries: int = 0  # tries of this job so far, this one included


class Farm:
    def __init__(self, options: FarmOptions, stream=None):
        self.options = options
        self.stream = stream or sys.stderr
        self.ray = extra.ray()
        self.owns_ray = not self.ray.is_initialized()
        if self.owns_ray:
            self.ray.init(address=options.address, include_dashboard=False)
        try:
            count, resources, cpu = self._plan_workers()
        except FarmError:
            if self.owns_ray:
                self.ray.shutdown()
            raise
        settings = WorkerSettings(options.comfyui, options.comfyui_python, tuple(options.comfyui_args), cpu,
                                  options.startup_timeout)
        actor = self.ray.remote(max_restarts=MAX_WORKER_RESTARTS, max_task_retries=0, **resources)(FarmWorker)
        self.workers = [Worker(WorkerTally(f"w{number}"), actor.remote(settings)) for number in range(1, count + 1)]
        self.calls: dict = {}
        for worker in self.workers:
            self._ask_ready(worker)
        kind = f"{resources['num_cpus']:g} CPUs each, ComfyUI --cpu" if cpu else "one GPU each"
        print(f"farm: {count} workers ({kind}) on Ray {self.ray.__version__}", file=self.stream)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _plan_workers(self) -> tuple[int, dict, bool]:
        resources = self.ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), int(resources.get("GPU", 0))
        if self.options.cpus_per_worker:
            per = self.options.cpus_per_worker
            count = self.options.workers or int(cpus // per)
            if count < 1:
                raise FarmError(f"the Ray cluster has {cpus:g} CPUs, fewer than --cpus-per-worker {per:g}.")
            return count, {"num_cpus": per, "num_gpus": 0}, True
        count = self.options.workers or gpus
        if count < 1:
            raise FarmError("the Ray cluster has no GPUs: give --workers N to wait for N GPU workers (an autoscaler "
                            "adds the nodes), or --cpus-per-worker N to run ComfyUI on CPUs (slow: for trying it out).")
        return count, {"num_gpus": 1, "num_cpus": 1}, False

    # ---- one run over a list of jobs

    def run(self, jobs: list[Job], workflow: dict, out: str, *, manifest=None, storage_options: Optional[dict] = None,
            tries: int = DEFAULT_TRIES, job_timeout: Optional[float] = None,
            price_per_hour: float = DEFAULT_PRICE_PER_GPU_HOUR) -> FarmReport:
        dest = Destination(out, storage_options)
        manifest = Manifest(manifest or default_manifest(dest))
        started = time.monotonic()
        for worker in self.workers:  # each run reports its own counts
            worker.tally = WorkerTally(worker.tally.name, worker.tally.where)
        report = FarmReport([worker.tally for worker in self.workers], price_per_hour, manifest=str(manifest.path))
        to_run, report.skipped = jobs_to_run(jobs, dest, manifest, self.stream)
        queue = collections.deque(to_run)
        progress = FarmProgress(len(queue), [worker.tally.name for worker in self.workers], self.stream)
        for worker in self.workers:
            progress.worker(worker.tally.name, self._status(worker))
        run = _Run(self, queue, workflow, dest, manifest, report, progress, tries, job_timeout)
        try:
            run.loop()
        finally:
            progress.close()
            report.not_run = len(queue) + sum(1 for call in self.calls.values() if call.job is not None)
            report.wall_s = time.monotonic() - started
        dest.remove_partials()
        if not dest.is_local and manifest.path.exists():
            dest.publish(manifest.path, MANIFEST_NAME)  # a copy beside the videos; the farm appends to its own
        return report

    # ---- workers

    def _ask_ready(self, worker: Worker) -> None:
        """describe() answers once the worker (re)started its ComfyUI, or raises if the worker is gone for good."""
        self.calls[worker.handle.describe.remote()] = Call(worker)

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Until every worker has started (or restarted) its ComfyUI, or is gone for good; between runs, to time
        jobs without the start-up, or to see a worker back after a restart."""
        progress = FarmProgress(0, [worker.tally.name for worker in self.workers], self.stream, live=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(call.job is None for call in self.calls.values()):
            if deadline is not None and time.monotonic() > deadline:
                raise FarmError(f"workers still starting after {timeout:.0f} s")
            starting = [ref for ref, call in self.calls.items() if call.job is None]
            ready, _ = self.ray.wait(starting, num_returns=1, timeout=1.0)
            for ref in ready:
                self._take_start(ref, self.calls.pop(ref).worker, progress)

    def _take_start(self, ref, worker: Worker, progress: FarmProgress) -> None:
        """A describe() answered: the worker is ready, still restarting (ask again), or gone for good."""
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            self._ask_ready(worker)
            return
        except self.ray.exceptions.RayActorError as error:  # its start failed, or Ray gave up restarting it
            worker.state = "dead"
            progress.worker(worker.tally.name, f"could not start: {_cause(error)}", event=True)
            return
        restarted = bool(worker.info)
        worker.info, worker.state = info, "idle"
        gpus = ",".join(info["gpus"])
        worker.tally.where = info["host"] + (f" GPU {gpus}" if gpus else "")
        progress.worker(worker.tally.name, f"{'restarted' if restarted else 'ready'}: ComfyUI pid "
                                           f"{info['server_pid']} on {info['host']}", event=True)

    def _status(self, worker: Worker) -> str:
        where = f" ({worker.tally.where})" if worker.tally.where else ""
        return f"{worker.state}{where}"

    def close(self) -> None:
        """Stop every worker's ComfyUI, then the workers; the local Ray too if this farm started it."""
        # A busy worker (Ctrl-C mid-job) would finish its job first: it is killed, and Ray takes its ComfyUI along.
        stops = [worker.handle.stop.remote() for worker in self.workers if worker.state == "idle"]
        try:
            self.ray.wait(stops, num_returns=len(stops), timeout=30)
        finally:
            for worker in self.workers:
                self.ray.kill(worker.handle, no_restart=True)
            if self.owns_ray:
                self.ray.shutdown()


class _Run:
    """One pass over the queue: hand jobs to free workers, take their outcomes, record them."""

    def __init__(self, farm: Farm, queue, workflow, dest, manifest, report, progress, tries, job_timeout):
        self.farm, self.ray, self.queue = farm, farm.ray, queue
        self.workflow, self.dest, self.manifest, self.report = workflow, dest, manifest, report
        self.progress, self.tries, self.job_timeout = progress, tries, job_timeout
        self.tries_so_far: dict[str, int] = {}

    def loop(self) -> None:
        while self.queue or self._jobs_in_flight():
            self._dispatch()
            if not self.farm.calls:
                self.progress.note(f"no worker is left; {len(self.queue)} job(s) not run: rerun to do them")
                return
            ready, _ = self.ray.wait(list(self.farm.calls), num_returns=1, timeout=1.0)
            for ref in ready:
                self._take(ref, self.farm.calls.pop(ref))

    def _jobs_in_flight(self) -> bool:
        return any(call.job is not None for call in self.farm.calls.values())

    def _dispatch(self) -> None:
        for worker in self.farm.workers:
            if worker.state == "idle" and self.queue:
                job = self.queue.popleft()
                tries = self.tries_so_far.get(job.id, 0) + 1
                self.tries_so_far[job.id] = tries
                base = {"id": job.id, "line": job.line, "attempts": tries, "worker": worker.tally.name,
                        "where": worker.tally.where}
                ref = worker.handle.run_job.remote(job, self.workflow, _local_inputs(job), self.dest,
                                                   self.job_timeout, base)
                self.farm.calls[ref] = Call(worker, job, tries)
                worker.state = "busy"
                self.progress.worker(worker.tally.name, f"{job.id}" + (f" (try {tries})" if tries > 1 else ""))

    def _take(self, ref, call: Call) -> None:
        if call.job is None:
            self.farm._take_start(ref, call.worker, self.progress)
            return
        try:
            answer = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as error:
            self._worker_lost(call, error)
            return
        except self.ray.exceptions.RayTaskError as error:  # the worker's method raised: a failed try, say why
            answer = {"status": "failed", "error": _cause(error), "retry": True, "timings": {}}
        self._job_answered(call, answer)

    def _worker_lost(self, call: Call, error) -> None:
        worker = call.worker
        worker.tally.deaths += 1
        worker.state = "starting"
        self.progress.worker(worker.tally.name, f"died running {call.job.id}; Ray restarts it", event=True)
        self.farm._ask_ready(worker)
        self._try_again_or_fail(call, f"its worker {worker.tally.name} died ({_cause(error)})", retry=True)

    def _job_answered(self, call: Call, outcome: dict) -> None:
        worker = call.worker
        worker.state = "idle"
        for note in outcome.get("notes", []):
            self.progress.note(f"{worker.tally.name}: {note}")
        if outcome["status"] == "done":
            self.manifest.append(outcome["record"])
            self.dest.remove_receipt(call.job.id)
            worker.tally.jobs += 1
            worker.tally.busy_s += outcome["timings"]["wall_s"]
            worker.tally.video_s += outcome.get("video_seconds") or 0.0
            rtf = outcome.get("rtf")
            self.report.done += 1
            self.progress.job_finished(call.job.id, worker.tally.name, True,
                                       f"{outcome['timings']['wall_s']:.1f} s" + (f", RTF {rtf:.2f}" if rtf else ""))
        else:
            if outcome.get("server_died"):
                worker.tally.deaths += 1
            else:
                worker.tally.failed_tries += 1
            self._try_again_or_fail(call, outcome["error"], outcome["retry"])
        self.progress.worker(worker.tally.name, self.farm._status(worker))

    def _try_again_or_fail(self, call: Call, error: str, retry: bool) -> None:
        if retry and call.tries < self.tries:
            self.progress.note(f"{call.job.id}: try {call.tries} of {self.tries} failed ({error}); trying again")
            self.queue.append(call.job)
            return
        base = {"id": call.job.id, "line": call.job.line, "attempts": call.tries, "worker": call.worker.tally.name,
                "where": call.worker.tally.where}
        self.manifest.append(manifest_record(base, {"status": "failed", "error": error}))
        self.report.failed.append((call.job.id, error))
        self.progress.job_finished(call.job.id, call.worker.tally.name, False, error)


def run_jobs(jobs: list[Job], workflow: dict, out: str, options: FarmOptions, *, manifest=None,
             storage_options: Optional[dict] = None, **run_options) -> FarmReport:
    """Farm.run for the jobs not finished yet, starting Ray and the workers only when there are some."""
    dest = Destination(out, storage_options)
    manifest = manifest or default_manifest(dest)
    to_run, skipped = jobs_to_run(jobs, dest, Manifest(manifest))
    if not to_run:
        report = FarmReport([], run_options.get("price_per_hour", DEFAULT_PRICE_PER_GPU_HOUR), manifest=str(manifest))
    else:
        with Farm(options) as farm:
            report = farm.run(to_run, workflow, out, manifest=manifest, storage_options=storage_options,
                              **run_options)
    report.skipped += skipped
    return report


def jobs_to_run(jobs: list[Job], dest: Destination, manifest: Manifest, stream=None) -> tuple[list[Job], int]:
    """The jobs not finished yet, and how many are: a job is finished when the manifest's latest record for it says
    done and its outputs are in DEST at their recorded sizes. Also removes what interrupted copies left in DEST."""
    stream = stream or sys.stderr
    records, sizes = manifest.records(), dest.sizes()
    removed = dest.remove_partials()
    if removed:
        print(f"removed {removed} partial file(s) an interrupted run left in {dest}", file=stream)
    to_run = [job for job in jobs if not _finished(records.get(job.id), sizes)]
    skipped = len(jobs) - len(to_run)
    if skipped:
        print(f"{skipped} job(s) finished earlier (in {manifest.path}, outputs in {dest}): skipped", file=stream)
    recovered = _recover_from_receipts(to_run, dest, manifest, sizes)
    if recovered:
        print(f"{len(recovered)} job(s) finished after their driver stopped: recorded from their receipts in {dest}, "
              "not run again", file=stream)
    return [job for job in to_run if job.id not in recovered], skipped + len(recovered)


def _recover_from_receipts(jobs: list[Job], dest: Destination, manifest: Manifest, sizes: dict) -> set:
    """Append the records of jobs a worker finished after its driver died (their receipts); their ids."""
    recovered = set()
    for job_id, record in dest.receipts({job.id for job in jobs}).items():
        if _finished(record, sizes):
            manifest.append({**record, "recovered": "from its receipt: its driver stopped before recording it"})
            recovered.add(job_id)
        dest.remove_receipt(job_id)
    return recovered


def default_manifest(dest: Destination):
    if not dest.is_local:
        raise FarmError(f"--out {dest} is not a local folder: give --manifest PATH, a local file the farm appends "
                        "a line to per finished job (a rerun with the same file skips them); a copy is put beside "
                        "the outputs at the end.")
    return dest.local_root / MANIFEST_NAME


def _finished(record: Optional[dict], sizes: dict[str, int]) -> bool:
    """Recorded done, and every output in DEST at its recorded size."""
    outputs = (record or {}).get("outputs") or []
    return bool(outputs) and record["status"] == "done" and all(
        sizes.get(item["location"].rsplit("/", 1)[-1]) == item["size"] for item in outputs)


def _local_inputs(job: Job) -> dict[str, bytes]:
    """The job's local input files, read here: the workers may be other machines. URLs are read by the worker."""
    return {item.location: Path(item.location).read_bytes() for item in job.inputs if not item.is_url}


def _cause(error) -> str:
    """The last line of a Ray error that says what happened (Ray wraps the cause in a long explanation)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:300]
    return lines[-1][:300] if lines else type(error).__name__
