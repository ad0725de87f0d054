"""The farm's job file: one JSON object a line, each a job with an id and the overrides `run` takes.

    {"id": "fox-001", "prompt": "a red fox running through snow", "seed": 7, "width": 1280, "height": 720,
     "length": 81, "set": {"Load VAE.vae_name": "wan_2.1_vae.safetensors", "LoadLatent.latent": "@latents/fox.latent"}}

`set` takes {"NODE.input": value} or a list of "NODE.input=value" strings, as `run --set` does; a value `@PATH` is an
input file uploaded to the worker's ComfyUI (a path relative to the job file, or a URL such as s3://bucket/key that
the worker reads). The whole file is checked before anything runs: every problem comes back with its line number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.errors import WorkflowError
from ..client.formats import is_api_format
from ..client.overrides import Overrides, find_nodes
from ..client.run_command import parse_set

# Ids name the output files, so they must be safe file names everywhere (local folders, S3 keys, Windows too).
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
OVERRIDE_KEYS = {"prompt": (str, "a string"), "negative": (str, "a string"), "seed": (int, "an integer"),
                 "width": (int, "an integer"), "height": (int, "an integer"), "length": (int, "an integer"),
                 "fps": ((int, float), "a number")}
KNOWN_KEYS = {"id", "set", *OVERRIDE_KEYS}


@dataclass(frozen=True)
class InputFile:
    """An `@` value of a job: where the file is (a local path or a URL) and the --set it feeds."""

    node: str
    input_name: str
    location: str

    @property
    def is_url(self) -> bool:
        return "://" in self.location


@dataclass(frozen=True)
class Job:
    id: str
    line: int
    overrides: dict = field(default_factory=dict)  # prompt, seed, ... as given
    sets: tuple = ()  # (node, input, value) for values that are not files
    inputs: tuple = ()  # InputFile for @ values

    def to_overrides(self, uploaded: dict[str, str]) -> Overrides:
        """The client's Overrides, each input file replaced by `@local path` (uploaded by the client as it runs)."""
        sets = list(self.sets) + [(item.node, item.input_name, "@" + uploaded[item.location]) for item in self.inputs]
        return Overrides(**self.overrides, sets=sets)


@dataclass(frozen=True)
class BadLine:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


@dataclass
class JobFile:
    path: Path
    jobs: list[Job]
    bad_lines: list[BadLine]


class JobFileError(Exception):
    """The job file can't be used as it is; the message lists every bad line."""

    def __init__(self, path: Path, bad_lines: list[BadLine]):
        self.bad_lines = bad_lines
        listed = "\n".join(f"  {bad}" for bad in bad_lines)
        super().__init__(f"{path}: {len(bad_lines)} bad line(s):\n{listed}")


def load_jobs(path) -> JobFile:
    """Every line of the job file checked; the good jobs and the bad lines (never raises for a bad line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise JobFileError(path, [BadLine(0, "no such file")]) from None
    jobs, bad_lines, first_seen = [], [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            job = parse_job(raw, number, path.parent)
        except ValueError as error:
            bad_lines.append(BadLine(number, str(error)))
            continue
        if job.id in first_seen:
            bad_lines.append(BadLine(number, f"id {job.id!r} is already used on line {first_seen[job.id]}; ids name "
                                             "the outputs, so each must be unique"))
            continue
        first_seen[job.id] = number
        jobs.append(job)
    if not jobs and not bad_lines:
        bad_lines.append(BadLine(0, "no jobs in the file (one JSON object a line, each with an \"id\")"))
    return JobFile(path, jobs, bad_lines)


def parse_job(raw: str, line: int, base: Path) -> Job:
    """One line -> Job; ValueError saying what is wrong and how it should look."""
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(entry, dict):
        raise ValueError('expected a JSON object like {"id": "clip-1", "seed": 7}')
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; a job takes {', '.join(sorted(KNOWN_KEYS))}")
    job_id = _job_id(entry.get("id"))
    overrides = {key: _typed(key, entry[key]) for key in OVERRIDE_KEYS if entry.get(key) is not None}
    sets, inputs = [], []
    for node, input_name, value in _set_items(entry.get("set", {})):
        if isinstance(value, str) and value.startswith("@"):
            inputs.append(_input_file(node, input_name, value[1:], base))
        else:
            sets.append((node, input_name, value))
    return Job(job_id, line, overrides, tuple(sets), tuple(inputs))


def _job_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"\"id\" must be a string of letters, digits, '.', '_' or '-' (at most 128, not starting with "
                         f"'.' or '-'): it names the output file; got {json.dumps(value)}")
    return value


def _typed(key: str, value: Any):
    kind, described = OVERRIDE_KEYS[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"\"{key}\" must be {described}, got {json.dumps(value)}")
    return value


def _set_items(value: Any) -> list[tuple[str, str, Any]]:
    if isinstance(value, dict):
        items = []
        for target, item in value.items():
            node, dot, input_name = target.rpartition(".")
            if not (dot and node and input_name):
                raise ValueError(f"\"set\" key {target!r}: expected \"NODE.input\", e.g. \"Load VAE.vae_name\"")
            items.append((node, input_name, item))
        return items
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        try:
            return [parse_set(item) for item in value]
        except WorkflowError as error:
            raise ValueError(str(error).replace("--set ", "\"set\" ")) from None
    raise ValueError('"set" must be {"NODE.input": value, ...} or ["NODE.input=value", ...]')


def _input_file(node: str, input_name: str, location: str, base: Path) -> InputFile:
    if not location:
        raise ValueError(f"\"set\" {node}.{input_name}: '@' must be followed by a file path or URL")
    if "://" in location:
        return InputFile(node, input_name, location)
    path = (base / location).resolve()
    if not path.is_file():
        raise ValueError(f"input file {location} (for {node}.{input_name}) does not exist: looked at {path}")
    return InputFile(node, input_name, str(path))


def check_against_workflow(job_file: JobFile, workflow: dict) -> None:
    """Moves jobs whose `set` names a node an API-format workflow lacks to the bad lines: a typo there would fail
    every job on the workers. UI-format workflows are converted on the workers, which check them there."""
    if not is_api_format(workflow):
        return
    prompt = workflow
    good = []
    for job in job_file.jobs:
        try:
            for node, _, _ in list(job.sets) + [(item.node, None, None) for item in job.inputs]:
                find_nodes(prompt, node)
        except WorkflowError as error:
            job_file.bad_lines.append(BadLine(job.line, f"job {job.id!r}: {error}"))
            continue
        good.append(job)
    job_file.bad_lines.sort(key=lambda bad: bad.line)
    job_file.jobs = good
