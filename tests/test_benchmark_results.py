"""benchmarks/results.jsonl is where measured numbers live: the README's table is rendered from it, and a run's
report becomes rows keyed by card, torch, host release and commit."""

from pathlib import Path

from benchmarks.results import read, readme_table, rows_from_report, server_table

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = ("date", "card", "driver", "torch", "host", "commit", "command", "run")


def test_every_row_carries_its_key():
    rows = read()
    assert rows, "benchmarks/results.jsonl is empty"
    for row in rows:
        missing = [name for name in KEY if name not in row]
        assert not missing, f"row without {missing}: {row}"


def test_readme_shows_the_table_rendered_from_the_results_file():
    table = readme_table(read())
    assert table in (REPO_ROOT / "README.md").read_text(), (
        "README.md's measured table differs from benchmarks/results.jsonl; paste this in:\n" + table)


def test_a_bench_report_becomes_one_row_per_path():
    stats = {"frames": 5, "wall_seconds": 2.0, "decode_seconds": 1.5, "peak_vram_bytes": 2**30, "path": "/tmp/x"}
    report = {"machine": {"date": "2026-12-01", "card": "test card", "torch": "x", "driver": "1"},
              "case": {"impl": "diffusers", "arch": "wan2.1", "frames": 5, "width": 64, "height": 48, "fps": "16"},
              "paths": {"stock-like": stats, "streaming fast": {**stats, "wall_seconds": 1.0}},
              "fast_psnr_vs_exact_db": 45.04, "decode_only": {"fastvae": {"skipped": "not installed"}}}
    rows = rows_from_report(report, host="ComfyUI 0.3.64", commit="abc1234", command="python -m benchmarks",
                            run="test")
    assert [row["path"] for row in rows] == ["stock-like", "streaming fast"]
    assert rows[1]["psnr_vs_exact_db"] == 45.04 and rows[1]["case"] == "wan2.1_64x48x5"
    assert {name: rows[0][name] for name in ("card", "host", "commit")} == {
        "card": "test card", "host": "ComfyUI 0.3.64", "commit": "abc1234"}
    assert "path" not in {key for key, value in rows[0].items() if value == "/tmp/x"}  # no temp paths kept


def test_readme_server_table_is_the_latest_gpu_server_rows():
    table = server_table(read())
    assert "| ComfyUI 0.33.0 |" in table
    assert table in (REPO_ROOT / "README.md").read_text(), (
        "README.md's inside-ComfyUI table differs from benchmarks/results.jsonl; paste this in:\n" + table)
