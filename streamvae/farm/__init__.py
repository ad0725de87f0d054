"""The render farm: a workflow run once per line of a job file, across Ray workers that each own a ComfyUI.

    python -m streamvae farm jobs.jsonl --workflow example_workflows/wan22_14b_t2v.json --out s3://bucket/videos \\
        --manifest farm.jsonl --address auto

    from streamvae.farm import run_farm
    report = run_farm("jobs.jsonl", "example_workflows/decode_only.json", "out/", skip_bad_lines=True)
    print(report.table())

Ray, fsspec and s3fs come with the farm extra (pip install "comfyui-streamvae[farm]"); nothing else in the pack
imports them, and this package imports Ray only when a farm starts. One job a module:

    jobs.py          the job file: parsed and checked up front, every problem with its line number
    extra.py         the optional packages, and what to install when one is missing
    comfy_process.py a worker's own ComfyUI on 127.0.0.1 and a free port
    worker.py        the Ray actor: its ComfyUI, warm across jobs; one job through the headless client
    destination.py   DEST, a folder or an object store URL: files appear whole or not at all
    manifest.py      the append-only record of finished jobs that reruns resume from
    driver.py        Farm: the workers, the queue, faults, the manifest
    report.py        the progress bar, the per-worker lines and the summary table
    command.py       `python -m streamvae farm`
"""

from __future__ import annotations

from typing import Optional

from ..client.errors import WorkflowError
from ..client.run_command import load_workflow
from . import extra
from .driver import Farm, FarmError, FarmOptions, run_jobs
from .jobs import Job, JobFile, JobFileError, check_against_workflow, load_jobs
from .report import FarmReport

__all__ = ["Farm", "FarmError", "FarmOptions", "FarmReport", "Job", "JobFile", "JobFileError", "WorkflowError",
           "check_against_workflow", "extra", "load_jobs", "load_workflow", "run_farm", "run_jobs"]


def run_farm(jobs, workflow, out: str, *, skip_bad_lines: bool = False, options: Optional[FarmOptions] = None,
             **run_options) -> FarmReport:
    """Run every job of the job file `jobs` with `workflow` (a path or a dict) into `out`.

    Bad lines raise JobFileError (each with its line number) unless skip_bad_lines; run_options go to Farm.run
    (manifest, storage_options, tries, job_timeout, price_per_hour)."""
    job_file = load_jobs(jobs)
    workflow = workflow if isinstance(workflow, dict) else load_workflow(workflow)
    check_against_workflow(job_file, workflow)
    if job_file.bad_lines and not skip_bad_lines:
        raise JobFileError(job_file.path, job_file.bad_lines)
    return run_jobs(job_file.jobs, workflow, out, options or FarmOptions(), **run_options)
