"""`python -m streamvae farm JOBS.jsonl --workflow W.json --out DEST`: its options, the job file check, the run, the
summary and the exit code (0 all done, 1 some failed or not run, 2 bad job file or option, 130 Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..stats import DEFAULT_PRICE_PER_GPU_HOUR
from .driver import DEFAULT_TRIES, FarmError, FarmOptions, run_jobs
from .extra import FarmExtraMissing
from .jobs import JobFile, JobFileError


def add_farm_command(commands) -> None:
    """Register `farm` on the CLI's subparsers."""
    farm = commands.add_parser(
        "farm", help="run a workflow once per line of a job file, on Ray workers each with its own ComfyUI",
        description="Run a workflow for every job in a JSON-lines file across a Ray cluster: one worker per GPU, "
                    "each with its own ComfyUI on 127.0.0.1. Outputs are named by job id and written whole to "
                    "--out; a manifest records each finished job, and a rerun with it skips them. Needs the farm "
                    'extra: pip install "comfyui-streamvae[farm]".')
    farm.add_argument("jobs", type=Path, help='job file: one JSON object a line, e.g. {"id": "fox-1", "prompt": '
                                              '"a red fox", "seed": 7, "set": {"LoadLatent.latent": "@fox.latent"}}')
    farm.add_argument("--workflow", type=Path, required=True, help="workflow JSON, UI or API format")
    farm.add_argument("--out", required=True, help="a folder, or an object store URL (s3://bucket/prefix)")
    farm.add_argument("--manifest", type=Path,
                      help="the append-only record of finished jobs (default: OUT/manifest.jsonl; required when "
                           "--out is a URL)")
    farm.add_argument("--storage-options", type=_json_object, default={}, metavar="JSON",
                      help='fsspec options for a URL --out, e.g. \'{"endpoint_url": "http://minio:9000"}\' '
                           "(credentials come from the usual AWS variables or instance role)")
    farm.add_argument("--skip-bad-lines", action="store_true",
                      help="run the good jobs when some lines of the job file are bad (default: stop, or ask on a "
                           "terminal)")
    farm.add_argument("--address", help='a running Ray cluster: "auto" or HOST:PORT (default: start a local one)')
    farm.add_argument("--workers", type=int, help="how many workers (default: one per GPU in the cluster)")
    farm.add_argument("--cpus-per-worker", type=float,
                      help="workers without GPUs: one per this many CPUs, each ComfyUI with --cpu")
    farm.add_argument("--comfyui", help="ComfyUI folder on the workers (default: $COMFYUI_PATH there, else "
                                        "~/comfy/ComfyUI, where deploy/g7e/setup.sh puts it)")
    farm.add_argument("--comfyui-python", help="ComfyUI's python on the workers (default: the workers' own)")
    farm.add_argument("--comfyui-args", default="", metavar="'ARGS'",
                      help="extra arguments for each ComfyUI: --comfyui-args=--highvram (one argument: with '=') "
                           "or --comfyui-args '--highvram --reserve-vram 2'")
    farm.add_argument("--tries", type=int, default=DEFAULT_TRIES,
                      help="tries per job before it is recorded failed (default %(default)s)")
    farm.add_argument("--job-timeout", type=float, help="seconds one try may take (it is cancelled after)")
    farm.add_argument("--startup-timeout", type=float, default=600.0,
                      help="seconds a worker's ComfyUI may take to start (default %(default)s)")
    farm.add_argument("--price-per-hour", type=float, default=DEFAULT_PRICE_PER_GPU_HOUR,
                      help="$ per worker-hour for the summary (default %(default)s, g7e.2xlarge on demand)")
    farm.set_defaults(run=cmd_farm)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}); e.g. '{{\"endpoint_url\": \"...\"}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of fsspec options")
    return value


def cmd_farm(args) -> int:
    from .. import farm  # noqa: PLC0415

    try:
        farm.extra.ray()
        job_file = farm.load_jobs(args.jobs)
        workflow = farm.load_workflow(args.workflow)
        farm.check_against_workflow(job_file, workflow)
        if job_file.bad_lines and not _go_on(job_file, args.skip_bad_lines):
            return 2
        options = FarmOptions(args.address, args.workers, args.cpus_per_worker, args.comfyui, args.comfyui_python,
                              tuple(shlex.split(args.comfyui_args)), args.startup_timeout)
        report = run_jobs(job_file.jobs, workflow, args.out, options, manifest=args.manifest,
                          storage_options=args.storage_options, tries=args.tries, job_timeout=args.job_timeout,
                          price_per_hour=args.price_per_hour)
    except (FarmExtraMissing, FarmError, JobFileError, farm.WorkflowError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished jobs are in the manifest; run the same command again to do the rest",
              file=sys.stderr)
        return 130
    if report.workers:
        print(report.table())
    else:
        print(f"all {report.skipped} job(s) finished earlier; nothing to do")
    for job_id, error in report.failed:
        print(f"failed: {job_id}: {error}", file=sys.stderr)
    print(f"manifest: {report.manifest}")
    return 0 if report.ok else 1


def _go_on(job_file: JobFile, skip_bad_lines: bool) -> bool:
    """Whether to run without the bad lines: --skip-bad-lines, else the user's answer on a terminal, else no."""
    print(JobFileError(job_file.path, job_file.bad_lines), file=sys.stderr)
    if skip_bad_lines:
        print(f"going on without them: {len(job_file.jobs)} job(s)", file=sys.stderr)
        return True
    if not job_file.jobs:
        return False
    if sys.stdin.isatty():
        answer = input(f"Run the other {len(job_file.jobs)} job(s) without them? [y/N] ")
        return answer.strip().lower() in ("y", "yes")
    print(f"stopped: fix those lines, or pass --skip-bad-lines to run the other {len(job_file.jobs)} job(s)",
          file=sys.stderr)
    return False
