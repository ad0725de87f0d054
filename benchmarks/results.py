"""benchmarks/results.jsonl: every benchmark run appends its rows here, one JSON object a line, never rewritten.

Each row carries what makes it comparable with another: `date`, `card`, `driver`, `torch`, `host` (the ComfyUI
release whose VAE classes ran, or "none (diffusers' classes)"), `commit` (of this repository; "-dirty" when the
checkout had changes), the `command` that produced it and a `run` label; then what was measured. The README's
table is rendered from the latest rows (readme_table), and a test checks that the README shows exactly that.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterable, Optional

RESULTS = Path(__file__).with_name("results.jsonl")
REPO_ROOT = Path(__file__).resolve().parents[1]
NO_HOST = "none (diffusers' classes)"
# What a bench report's stats become in a row (bytes and seconds as measured; ratios derived from them).
STAT_FIELDS = ("frames", "wall_seconds", "decode_seconds", "encode_seconds", "realtime_factor", "gpu_busy",
               "peak_vram_bytes", "peak_host_rss_bytes", "encoder")


def current_commit() -> str:
    """This checkout's commit, with "-dirty" when it has uncommitted changes; "unknown" outside git."""
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout
    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        return (commit + "-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else commit) \
            or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rows_from_report(report: dict, *, host: str, commit: str, command: str, run: str,
                     case_name: Optional[str] = None) -> list[dict]:
    """One row per path of a bench report (bench.json), and one per decode-only competitor when it has them."""
    machine, case = report["machine"], report["case"]
    key = {"date": machine["date"], "card": machine["card"], "driver": machine.get("driver"),
           "torch": machine["torch"], "host": host, "commit": commit, "command": command, "run": run,
           "pyav": machine.get("pyav"), "cpu_count": machine.get("cpu_count"),
           "case": case_name or f"{case['arch']}_{case['width']}x{case['height']}x{case['frames']}",
           **{name: case[name] for name in ("impl", "arch", "frames", "width", "height", "fps", "dtype", "crf",
                                            "preset") if name in case}}
    rows = []
    for path, stats in report["paths"].items():
        row = {**key, "path": path, **{name: stats[name] for name in STAT_FIELDS if name in stats}}
        if path == "streaming fast" and "fast_psnr_vs_exact_db" in report:
            row["psnr_vs_exact_db"] = round(report["fast_psnr_vs_exact_db"], 2)
        rows.append(row)
    for path, stats in report.get("decode_only", {}).items():
        if "skipped" not in stats:
            rows.append({**key, "path": f"{path} (decode only)", "decode_seconds": stats["decode_seconds"],
                         "peak_vram_bytes": stats["peak_vram_bytes"]})
    return rows


def rows_from_server_report(report: dict, *, commit: str, command: str) -> list[dict]:
    """One row per VAE and graph of the GPU server test (tests/host/test_gpu_server.py writes the report): seconds
    from the server's own execution timestamps, the best of the timed rounds; for the streaming graphs also the
    engine's own account of each timed run (`engine_stats`: decode against wall seconds, GPU busy), where the
    report has it."""
    key = {"date": report["date"], "card": report["card"], "driver": report["driver"], "torch": report["torch"],
           "host": f"ComfyUI {report['host_release']}", "commit": commit, "command": command,
           "run": "GPU server test", "benchmark": "gpu_server"}
    engine_stats = report.get("engine_stats", {})
    rows = []
    for name, times in report["seconds"].items():
        family, graph = name.split("/")
        row = {**key, "case": SERVER_CASES[family], "path": graph, "server_seconds": min(times), "rounds": times}
        if engine_stats.get(name):
            row["engine_stats"] = engine_stats[name]
        rows.append(row)
    return rows


def append(rows: Iterable[dict], path: Path = RESULTS) -> None:
    with open(path, "a", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=False) + "\n")


def read(path: Path = RESULTS) -> list[dict]:
    with open(path, encoding="utf-8") as source:
        return [json.loads(line) for line in source if line.strip()]


# --------------------------------------------------------------------------- the README's table

README_CASES = [("wan21_720p_161", "Wan 2.1, 1280×720×161"), ("wan21_720p_1001", "Wan 2.1, 1280×720×1001"),
                ("wan22_704p_121", "Wan 2.2, 1280×704×121"), ("wan21_480p_81", "Wan 2.1, 832×480×81")]
README_PATHS = [("stock-like", "stock ComfyUI (VAE Decode → Save Video)"), ("streaming exact", "StreamVAE exact"),
                ("streaming fast", "StreamVAE fast"), ("fastvae (decode only)", "fastvae, decode only (no file)")]


SERVER_CASES = {"wan21": "wan21_720p_161", "wan22": "wan22_704p_121"}
SERVER_GRAPHS = [("stock", "stock VAE Decode → Create Video → Save Video"),
                 ("exact", "VAE Decode (Streaming, exact) → Save Video (Streaming)"),
                 ("fast", "VAE Decode (Streaming, fast) → Save Video (Streaming)")]


def latest(rows: list[dict], *, command_contains: str = "--suite full") -> dict[tuple[str, str], dict]:
    """The last row appended for each (case, path) among full-suite runs."""
    found = {}
    for row in rows:
        if command_contains in row.get("command", ""):
            found[(row["case"], row["path"])] = row
    return found


def readme_table(rows: list[dict]) -> str:
    """The README's "Measured" table: latent → finished MP4 per case and path, from the latest suite rows."""
    found = latest(rows)
    lines = ["| case | path | wall s | vs stock | peak VRAM GiB | peak host RAM GiB | run |",
             "|---|---|---:|---:|---:|---:|---|"]
    for case, case_label in README_CASES:
        stock = found.get((case, "stock-like"))
        for path, path_label in README_PATHS:
            row = found.get((case, path))
            if row is None:
                continue
            wall, rss = row.get("wall_seconds"), row.get("peak_host_rss_bytes")
            seconds = f"{wall:.2f}" if wall else f"({row['decode_seconds']:.2f} decode)"
            ratio = f"{stock['wall_seconds'] / wall:.2f}×" if wall and stock else "—"
            host_ram = f"{rss / 2**30:.2f}" if rss else "—"
            lines.append(f"| {case_label} | {path_label} | {seconds} | {ratio} | {row['peak_vram_bytes'] / 2**30:.2f} "
                         f"| {host_ram} | {row['date']}, {row['commit']} |")
            case_label = ""
    return "\n".join(lines)


def server_table(rows: list[dict]) -> str:
    """The README's "Inside ComfyUI" table: per host release, case and graph, the latest GPU server test rows."""
    found = {}
    for row in rows:
        if row.get("benchmark") == "gpu_server":
            found[(row["host"], row["case"], row["path"])] = row
    hosts = sorted({host for host, _, _ in found}, key=lambda host: [int(part) for part in host.split()[-1].split(".")])
    lines = ["| host | case | graph | seconds | vs stock | run |", "|---|---|---|---:|---:|---|"]
    labels = dict(README_CASES)
    for host in hosts:
        for case in SERVER_CASES.values():
            stock = found.get((host, case, "stock"))
            for graph, graph_label in SERVER_GRAPHS:
                row = found.get((host, case, graph))
                if row is None:
                    continue
                ratio = f"{stock['server_seconds'] / row['server_seconds']:.2f}×" if stock else "—"
                lines.append(f"| {host} | {labels[case]} | {graph_label} | {row['server_seconds']:.2f} | {ratio} | "
                             f"{row['date'][:10]}, {row['commit']} |")
    return "\n".join(lines)
