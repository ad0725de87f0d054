"""What a farm run tells people: a live bar for the whole farm with a line per worker, and the summary table.

On a terminal: one tqdm bar (videos done/total, videos per hour, ETA) and below it a status line per worker.
Elsewhere (a log file, CI): a line per finished job and per worker event, each with the same counts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class WorkerTally:
    name: str
    where: str = ""  # host and GPU, once the worker has said
    jobs: int = 0  # jobs it finished
    failed_tries: int = 0  # tries that ended in the job's own error on this worker
    deaths: int = 0  # times the worker (or its ComfyUI) died holding a job
    busy_s: float = 0.0  # wall time of its finished jobs
    video_s: float = 0.0  # seconds of video they hold

    @property
    def rtf(self) -> Optional[float]:
        return self.busy_s / self.video_s if self.video_s else None


@dataclass
class FarmReport:
    workers: list[WorkerTally]
    price_per_hour: float
    done: int = 0  # finished in this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job id, error) recorded failed in this run
    skipped: int = 0  # finished by an earlier run (in the manifest, output in DEST)
    not_run: int = 0  # left when the run stopped early (no worker left, Ctrl-C)
    wall_s: float = 0.0
    manifest: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run

    def table(self) -> str:
        rows = [("worker", "where", "jobs", "failed tries", "deaths", "video s", "busy s", "RTF", "$/video-h")]
        total = WorkerTally("total")
        for tally in self.workers:
            rows.append(self._row(tally))
            for name in ("jobs", "failed_tries", "deaths", "busy_s", "video_s"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        rows.append(self._row(total))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                           for column, (cell, width) in enumerate(zip(row, widths, strict=True))) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        lines.append(self._farm_line(total))
        lines.append(f"RTF: worker seconds per second of video; $/video-h: RTF x ${self.price_per_hour:.2f} per "
                     "worker-hour (--price-per-hour)")
        return "\n".join(lines)

    def _row(self, tally: WorkerTally) -> tuple:
        rtf = tally.rtf
        return (tally.name, tally.where, str(tally.jobs), str(tally.failed_tries), str(tally.deaths),
                f"{tally.video_s:.1f}", f"{tally.busy_s:.1f}", "-" if rtf is None else f"{rtf:.3f}",
                "-" if rtf is None else f"{rtf * self.price_per_hour:.2f}")

    def _farm_line(self, total: WorkerTally) -> str:
        line = (f"farm: {self.done} done, {len(self.failed)} failed, {self.skipped} finished earlier"
                + (f", {self.not_run} not run" if self.not_run else "") + f" in {self.wall_s:.1f} s")
        if self.done and self.wall_s:
            line += f" ({self.done / self.wall_s * 3600:.0f} videos/h with {len(self.workers)} workers)"
        if total.video_s and self.wall_s:
            paid_rtf = len(self.workers) * self.wall_s / total.video_s
            line += (f"; counting idle time, {len(self.workers)} workers x {self.wall_s:.1f} s: RTF {paid_rtf:.3f}, "
                     f"${paid_rtf * self.price_per_hour:.2f} per video-hour")
        return line


class FarmProgress:
    def __init__(self, total: int, workers: list[str], stream=None, live: Optional[bool] = None):
        """live: bars on a terminal (default: when stream is one), else a line per event."""
        self.stream = stream or sys.stderr
        self.total, self.done, self.failed = total, 0, 0
        self.started = time.monotonic()
        self.live = (hasattr(self.stream, "isatty") and self.stream.isatty()) if live is None else live
        self.bar, self.rows = None, {}
        if self.live:
            from tqdm import tqdm  # noqa: PLC0415

            self.bar = tqdm(total=total, desc="farm", unit="video", file=self.stream, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
            self.rows = {name: tqdm(total=0, position=row, bar_format="{desc}", file=self.stream, leave=False)
                         for row, name in enumerate(workers, start=1)}

    def rate_and_eta(self) -> str:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed
        if not finished or not elapsed:
            return "-- videos/h, ETA --"
        per_hour = self.done / elapsed * 3600
        eta = (self.total - finished) * elapsed / finished
        return f"{per_hour:.0f} videos/h, ETA {_clock(eta)}"

    def worker(self, name: str, status: str, event: bool = False) -> None:
        """A worker's status line; event: also worth a line in a log (started, died, restarted)."""
        if self.live:
            self.rows[name].set_description_str(f"  {name}: {status}")
        elif event:
            print(f"{name}: {status}", file=self.stream, flush=True)

    def job_finished(self, job_id: str, worker: str, ok: bool, detail: str) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.live:
            self.bar.update(1)
            self.bar.set_postfix_str(self.rate_and_eta() + (f", {self.failed} failed" if self.failed else ""))
            if not ok:
                self.bar.write(f"{job_id} failed on {worker}: {detail}", file=self.stream)
        else:
            print(f"[{self.done + self.failed}/{self.total}] {job_id} {'done' if ok else 'FAILED'} on {worker}: "
                  f"{detail} | {self.rate_and_eta()}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.live:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        for row in self.rows.values():
            row.close()
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
