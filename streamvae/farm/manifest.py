"""The farm's manifest: an append-only JSON-lines file on the driver's machine, one record per finished job.

    {"id": "fox-001", "status": "done", "outputs": [{"location": "out/fox-001.mp4", "size": 1234, "sha256": "..."}],
     "worker": "w1", "node": "ip-10-0-1-7", "attempts": 1, "video_seconds": 5.06, "rtf": 0.41,
     "timings": {"inputs_s": 0.1, "render_s": 1.9, "publish_s": 0.1, "wall_s": 2.1}, "finished_at": "..."}

A failed job gets {"status": "failed", "error": "...", "attempts": N}. A later record for the same id supersedes an
earlier one, so a rerun that finishes a job failed before appends its "done" record. Each record is one write of a
whole line, flushed and fsynced: a driver killed mid-write leaves at most a torn line (the start of a record), which
reading skips and the next append starts after.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

# What a worker's outcome carries for the driver only.
NOT_RECORDED = ("retry", "notes", "server_died", "record")


def manifest_record(base: dict, outcome: dict) -> dict:
    """A manifest line: what the driver knows of the try (id, worker, where, attempts, line) and how it ended."""
    record = {**base, **{key: value for key, value in outcome.items() if key not in NOT_RECORDED}}
    record["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return record


class Manifest:
    def __init__(self, path):
        self.path = Path(path)

    def records(self) -> dict[str, dict]:
        """The latest record of each job id (empty when the file does not exist yet)."""
        if not self.path.exists():
            return {}
        latest = {}
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if line.startswith("{"):  # a write cut short by a killed driver: that job simply runs again
                    print(f"{self.path}: line {number} is incomplete (an interrupted write); ignoring it",
                          file=sys.stderr)
                    continue
                raise ValueError(f"{self.path}: line {number} is not JSON; this file is not a farm manifest, or it "
                                 "was edited: fix or move it, or give another --manifest") from None
            latest[record["id"]] = record
        return latest

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a+b") as handle:
            if handle.tell() and not self._ends_with_newline(handle):
                line = "\n" + line  # after a torn last line
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _ends_with_newline(handle) -> bool:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
