"""A farm worker: the Ray actor that owns one ComfyUI and runs jobs on it through the headless client.

The driver makes it a Ray actor (one GPU, or --cpus-per-worker CPUs); this module imports no Ray at its top, so
it reads and tests as a plain class. The ComfyUI server starts with the worker and stays warm across jobs; if it
has died when a job comes, or dies during one, the worker starts a new one and says so in the job's outcome.

A job's outcome, for the driver:
    {"status": "done", "outputs": [{"location", "size", "sha256"}], "video_seconds", "rtf", "timings": {...},
     "record": the job's manifest record, also left in DEST as its receipt}
    {"status": "failed", "error": "...", "retry": bool}   retry False: trying again can't help (a missing input,
                                                          a prompt the server refuses)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..client import ComfyClient, output_files, workflow_extra
from ..client.error_text import describe_execution_error
from ..client.errors import ClientError, PromptRejected, RunTimeout, WorkflowError
from .comfy_process import ComfyProcess, comfyui_folder
from .destination import Destination, read_input
from .jobs import Job
from .manifest import manifest_record

ROOT_PREFIX = "streamvae-farm-"
# A ComfyUI this worker started drops its WebSocket only when it dies: no reason to wait long for it to come back.
RECONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerSettings:
    comfyui: Optional[str] = None  # a path on the worker machines; else $COMFYUI_PATH there, else ~/comfy/ComfyUI
    python: Optional[str] = None  # ComfyUI's interpreter; else $STREAMVAE_COMFYUI_PYTHON, else the worker's own
    comfyui_args: tuple = ()  # extra arguments for main.py (--highvram, --extra-model-paths-config FILE, ...)
    cpu: bool = False  # ComfyUI --cpu: workers without a GPU
    startup_timeout: float = 600.0


class JobFailed(Exception):
    def __init__(self, message: str, retry: bool, server_died: bool = False):
        super().__init__(message)
        self.retry, self.server_died = retry, server_died


class FarmWorker:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        remove_stale_roots()
        self.root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
        python = settings.python or os.environ.get("STREAMVAE_COMFYUI_PYTHON") or sys.executable
        self.server = ComfyProcess(comfyui_folder(settings.comfyui), python, self.root / "comfyui",
                                   settings.comfyui_args, settings.cpu)
        self.server_restarts = 0
        self.server.start(settings.startup_timeout)

    def describe(self) -> dict:
        """Where this worker runs: for the progress lines, the summary and the manifest."""
        import ray  # noqa: PLC0415 - only ever called inside a Ray actor

        return {"pid": os.getpid(), "host": socket.gethostname(), "gpus": [str(g) for g in ray.get_gpu_ids()],
                "server_pid": self.server.pid, "server_url": self.server.url, "server_restarts": self.server_restarts,
                "comfyui": str(self.server.comfyui)}

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- one job

    def run_job(self, job: Job, workflow: dict, input_bytes: dict, dest: Destination, timeout: Optional[float],
                record_base: dict) -> dict:
        """One try of a job. On success its manifest record (record_base, what the driver knows, plus the outputs
        and timings) is left in DEST as a receipt and returned as outcome["record"]."""
        started = time.monotonic()
        notes = []
        if not self.server.alive():
            notes.append(self._restart_server(f"ComfyUI had exited ({self.server.process.returncode})"))
        work = self.root / "jobs" / f"{job.id}.{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            outcome = self._run(job, workflow, input_bytes, dest, timeout, work)
        except JobFailed as failure:
            outcome = {"status": "failed", "error": str(failure), "retry": failure.retry,
                       "server_died": failure.server_died}
        except Exception as error:  # noqa: BLE001 - writing to DEST, reading an input: the try failed, say how
            outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}", "retry": True}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        outcome.setdefault("timings", {})["wall_s"] = round(time.monotonic() - started, 3)
        if notes:
            outcome["notes"] = notes
        if outcome["status"] == "done":
            if outcome.get("video_seconds"):
                outcome["rtf"] = round(outcome["timings"]["wall_s"] / outcome["video_seconds"], 4)
            outcome["record"] = manifest_record(record_base, outcome)
            dest.put_receipt(job.id, outcome["record"])
        return outcome

    def _run(self, job: Job, workflow: dict, input_bytes: dict, dest: Destination, timeout: Optional[float],
             work: Path) -> dict:
        clock = time.monotonic()
        staged = self._stage_inputs(job, input_bytes, dest, work / "inputs")
        client = ComfyClient(self.server.url)
        try:
            prompt = client.prepare(workflow, job.to_overrides({key: str(path) for key, path in staged.items()}))
            unique_output_names(prompt, work.name)
            inputs_s = time.monotonic() - clock
            clock = time.monotonic()
            result = client.execute(prompt, workflow_extra(workflow), out_dir=work / "out", timeout=timeout,
                                    reconnect_for=RECONNECT_SECONDS)
        except (WorkflowError, PromptRejected) as error:
            raise JobFailed(str(error), retry=False) from None
        except RunTimeout as error:
            raise JobFailed(f"{error} (--job-timeout); it was cancelled on the server", retry=True) from None
        except ClientError as error:
            if not self.server.alive():
                note = self._restart_server(f"ComfyUI exited during the job ({self.server.process.returncode})")
                raise JobFailed(note, retry=True, server_died=True) from None
            raise JobFailed(str(error), retry=True) from None
        finally:
            self._remove_uploads(staged)
        render_s = time.monotonic() - clock
        try:
            if not result.ok:
                raise JobFailed(self._failure_text(result), retry=True)
            if not result.files:
                raise JobFailed("the workflow saved no files: it needs a save node (Save Video (Streaming), ...)",
                                retry=False)
            clock = time.monotonic()
            names = output_names(job.id, result.files)
            outputs = [publish(dest, path, name) for path, name in zip(result.files, names, strict=True)]
            publish_s = time.monotonic() - clock
        finally:
            self._remove_server_outputs(result.outputs)
        return {"status": "done", "outputs": outputs, "video_seconds": video_seconds(result.files),
                "timings": {"inputs_s": round(inputs_s, 3), "render_s": round(render_s, 3),
                            "publish_s": round(publish_s, 3)}}

    def _stage_inputs(self, job: Job, input_bytes: dict, dest: Destination, folder: Path) -> dict[str, Path]:
        """Each input file in a local file named uniquely (the job id and this try), so that what ComfyUI keeps in
        its input folder never mixes two jobs up; {location: local path}."""
        folder.mkdir(parents=True)
        staged = {}
        for item in job.inputs:
            target = folder / f"{job.id}.{uuid.uuid4().hex[:8]}.{Path(item.location).name}"
            if item.is_url:
                same_store = item.location.split("://", 1)[0] == dest.protocol
                try:
                    read_input(item.location, dest.storage_options if same_store else {}, target)
                except FileNotFoundError:
                    raise JobFailed(f"input {item.location} (for {item.node}.{item.input_name}) does not exist",
                                    retry=False) from None
            else:
                target.write_bytes(input_bytes[item.location])
            staged[item.location] = target
        return staged

    def _failure_text(self, result) -> str:
        if result.status == "interrupted":
            return "the prompt was interrupted on the worker's ComfyUI"
        if result.error is None:
            return f"the prompt ended without success and without an error report; see {self.server.log_path}"
        return describe_execution_error(result.error, result.prompt)

    def _restart_server(self, why: str) -> str:
        self.server.stop()
        self.server_restarts += 1
        self.server.start(self.settings.startup_timeout)
        return f"{why}; started a new ComfyUI"

    def _remove_uploads(self, staged: dict[str, Path]) -> None:
        for path in staged.values():
            (self.server.input_dir / path.name).unlink(missing_ok=True)

    def _remove_server_outputs(self, outputs: dict) -> None:
        """The worker's ComfyUI keeps what it saved; once published, it would only fill the worker's disk."""
        for item in output_files(outputs):
            (self.server.output_dir / (item.get("subfolder") or "") / item["filename"]).unlink(missing_ok=True)


def unique_output_names(prompt: dict, tag: str) -> None:
    """Put every save node's files in a folder of this try's own (`farm/TAG/...`): the worker's files never collide,
    and ComfyUI, which skips a node whose inputs it has seen before, runs the save node again on a retry."""
    for node in prompt.values():
        prefix = node.get("inputs", {}).get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"farm/{tag}/{prefix}"


def output_names(job_id: str, files: list[Path]) -> list[str]:
    """`ID.mp4` for a job's one file; `ID_1.mp4`, `ID_2.png`, ... when its workflow saves several."""
    if len(files) == 1:
        return [job_id + files[0].suffix]
    return [f"{job_id}_{number}{path.suffix}" for number, path in enumerate(files, start=1)]


def publish(dest: Destination, path: Path, name: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
    return {"location": dest.publish(path, name), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def video_seconds(files: list[Path]) -> Optional[float]:
    """Duration of the first video among the job's files (frames / frame rate), for its RTF; None without one."""
    import av  # noqa: PLC0415 - a dependency of the pack, present wherever ComfyUI runs it

    for path in files:
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    continue
                stream = container.streams.video[0]
                if stream.frames and stream.average_rate:
                    return round(stream.frames / float(stream.average_rate), 4)
                if container.duration:
                    return round(container.duration / av.time_base, 4)
        except av.error.FFmpegError:
            continue  # an image or another file PyAV can't read: not the video
    return None


def remove_stale_roots() -> None:
    """Folders left by workers that were killed (a restarted actor is a new process): their pid no longer runs."""
    for folder in Path(tempfile.gettempdir()).glob(ROOT_PREFIX + "*"):
        pid = folder.name[len(ROOT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
