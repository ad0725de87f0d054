"""The farm's files, without a cluster: the job file checked line by line, the manifest's append and resume rules, a
folder destination's whole-or-nothing writes, and the optional packages kept optional (the engine never imports
them; `farm` without them says what to install)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamvae.farm.destination import PARTIAL_FOLDER, Destination
from streamvae.farm.driver import jobs_to_run
from streamvae.farm.jobs import check_against_workflow, load_jobs
from streamvae.farm.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]
DECODE_ONLY_API = json.loads((REPO / "workflows" / "api" / "decode_only.json").read_text())


def job_file(folder: Path, *lines: str) -> Path:
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_lines_become_jobs_with_their_overrides_and_input_files(tmp_path):
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "a.latent").write_bytes(b"x")
    path = job_file(tmp_path,
                    "# comments and blank lines are skipped", "",
                    json.dumps({"id": "fox-1", "prompt": "a red fox", "seed": 7, "width": 1280, "height": 720,
                                "length": 81, "fps": 16, "set": {"Load VAE.vae_name": "wan_2.1_vae.safetensors",
                                                                 "LoadLatent.latent": "@latents/a.latent"}}),
                    json.dumps({"id": 42, "set": ["3.steps=30", "Load VAE.vae_name=x.safetensors",
                                                  "LoadLatent.latent=@s3://bucket/in/b.latent"]}))
    parsed = load_jobs(path)
    assert not parsed.bad_lines
    fox, numbered = parsed.jobs
    assert (fox.id, fox.line) == ("fox-1", 3)
    assert fox.overrides == {"prompt": "a red fox", "seed": 7, "width": 1280, "height": 720, "length": 81, "fps": 16}
    assert fox.sets == (("Load VAE", "vae_name", "wan_2.1_vae.safetensors"),)
    (latent,) = fox.inputs
    assert (latent.node, latent.input_name, latent.location) == ("LoadLatent", "latent",
                                                                 str(tmp_path / "latents" / "a.latent"))
    overrides = fox.to_overrides({latent.location: "/worker/tmp/fox-1.a.latent"})
    assert overrides.seed == 7 and ("LoadLatent", "latent", "@/worker/tmp/fox-1.a.latent") in overrides.sets
    assert numbered.id == "42" and numbered.inputs[0].is_url  # URLs are read by the worker, not checked here
    assert ("3", "steps", "30") in numbered.sets


def test_every_bad_line_is_reported_with_its_number_and_what_is_wrong(tmp_path):
    path = job_file(tmp_path,
                    json.dumps({"id": "ok-1"}),
                    '{"id": "cut',
                    json.dumps(["id", "x"]),
                    json.dumps({"id": "ok-2", "sead": 7}),
                    json.dumps({"id": "../escape"}),
                    json.dumps({"id": "ok-3", "seed": "7"}),
                    json.dumps({"id": "ok-1"}),
                    json.dumps({"id": "ok-4", "set": {"steps": 30}}),
                    json.dumps({"id": "ok-5", "set": {"LoadLatent.latent": "@nowhere.latent"}}),
                    json.dumps({"id": "ok-6", "set": ["3.steps"]}),
                    json.dumps({"id": "ok-7", "seed": True}))
    parsed = load_jobs(path)
    assert [job.id for job in parsed.jobs] == ["ok-1"]
    problems = {bad.line: bad.problem for bad in parsed.bad_lines}
    assert problems[2].startswith("not JSON (Unterminated string")
    assert problems[3] == 'expected a JSON object like {"id": "clip-1", "seed": 7}'
    assert problems[4].startswith("unknown key(s) sead; a job takes fps, height, id, length, negative, prompt")
    assert problems[5].startswith('"id" must be a string of letters, digits') and '"../escape"' in problems[5]
    assert problems[6] == '"seed" must be an integer, got "7"'
    assert problems[7] == "id 'ok-1' is already used on line 1; ids name the outputs, so each must be unique"
    assert problems[8] == "\"set\" key 'steps': expected \"NODE.input\", e.g. \"Load VAE.vae_name\""
    assert problems[9] == (f"input file nowhere.latent (for LoadLatent.latent) does not exist: looked at "
                           f"{tmp_path / 'nowhere.latent'}")
    assert problems[10].startswith("\"set\" '3.steps': expected NODE.input=value")
    assert problems[11] == '"seed" must be an integer, got true'
    assert str(parsed.bad_lines[0]) == f"line 2: {problems[2]}"


def test_a_set_naming_a_node_the_workflow_lacks_is_a_bad_line(tmp_path):
    path = job_file(tmp_path, json.dumps({"id": "a", "set": {"Load VAE.vae_name": "v.safetensors"}}),
                    json.dumps({"id": "b", "set": {"Load VEA.vae_name": "v.safetensors"}}))
    parsed = load_jobs(path)
    check_against_workflow(parsed, DECODE_ONLY_API)
    assert [job.id for job in parsed.jobs] == ["a"]
    (bad,) = parsed.bad_lines
    assert bad.line == 2 and bad.problem.startswith("job 'b': no node 'Load VEA' (by id, title or type).")


def test_the_manifest_keeps_the_latest_record_and_survives_a_torn_last_line(tmp_path, capsys):
    manifest = Manifest(tmp_path / "m.jsonl")
    assert manifest.records() == {}
    manifest.append({"id": "a", "status": "failed", "error": "boom"})
    manifest.append({"id": "b", "status": "done"})
    with open(manifest.path, "a") as handle:
        handle.write('{"id": "c", "stat')  # the driver killed mid-write
    assert set(manifest.records()) == {"a", "b"}
    assert "line 3 is incomplete (an interrupted write); ignoring it" in capsys.readouterr().err
    manifest.append({"id": "a", "status": "done"})
    lines = manifest.path.read_text().splitlines()
    assert lines[-1] == '{"id": "a", "status": "done"}'  # on a line of its own after the torn one
    assert manifest.records()["a"]["status"] == "done"


def test_a_manifest_damaged_in_the_middle_is_refused(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "status": "done"}\nnot json\n{"id": "b", "status": "done"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON; this file is not a farm manifest"):
        Manifest(path).records()


def test_a_folder_destination_shows_only_whole_files(tmp_path):
    source = tmp_path / "video.mp4"
    source.write_bytes(b"v" * 3000)
    dest = Destination(str(tmp_path / "out"))
    assert dest.sizes() == {}
    assert dest.publish(source, "job-1.mp4") == str(tmp_path / "out" / "job-1.mp4")
    assert dest.sizes() == {"job-1.mp4": 3000}
    # What a worker killed mid-copy leaves: a file in the partial folder, never under a job's name.
    (tmp_path / "out" / PARTIAL_FOLDER / "job-2.mp4.0123abcd").write_bytes(b"v" * 10)
    assert dest.sizes() == {"job-1.mp4": 3000}
    assert dest.remove_partials() == 1 and not (tmp_path / "out" / PARTIAL_FOLDER).exists()


def test_a_job_finished_after_its_driver_died_is_recorded_from_its_receipt_not_run_again(tmp_path, capsys):
    source = tmp_path / "video.mp4"
    source.write_bytes(b"v" * 100)
    dest = Destination(str(tmp_path / "out"))
    manifest = Manifest(tmp_path / "out" / "manifest.jsonl")
    jobs = load_jobs(job_file(tmp_path, *(json.dumps({"id": name}) for name in ("a", "b", "c", "d")))).jobs
    for name in ("a", "b", "c"):  # a: recorded; b: finished after its driver died; c: receipt, output gone
        output = {"location": dest.publish(source, f"{name}.mp4"), "size": 100, "sha256": "x"}
        record = {"id": name, "status": "done", "outputs": [output]}
        if name == "a":
            manifest.append(record)
        else:
            dest.put_receipt(name, record)
    (tmp_path / "out" / "c.mp4").unlink()
    to_run, finished = jobs_to_run(jobs, dest, manifest)
    assert [job.id for job in to_run] == ["c", "d"] and finished == 2
    assert "1 job(s) finished after their driver stopped: recorded from their receipts" in capsys.readouterr().err
    assert manifest.records()["b"]["recovered"] == "from its receipt: its driver stopped before recording it"
    assert dest.receipts({"a", "b", "c", "d"}) == {}  # read once, then removed


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_engine_and_the_cli_never_import_ray_or_fsspec():
    done = python("import sys, streamvae, streamvae.cli, streamvae.farm, streamvae.client\n"
                  "print(sorted(name for name in ('ray', 'fsspec', 's3fs') if name in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    # The nodes can't be imported without ComfyUI: read them instead.
    for path in list((REPO / "comfy_nodes").rglob("*.py")) + [REPO / "__init__.py"]:
        text = path.read_text()
        assert "import ray" not in text and "fsspec" not in text and "streamvae.farm" not in text, path


def test_farm_without_ray_says_what_to_install(tmp_path):
    jobs = job_file(tmp_path, json.dumps({"id": "a"}))
    done = python("import sys; sys.modules['ray'] = None\n"  # as if not installed
                  "from streamvae.cli import main\n"
                  f"sys.exit(main(['farm', {str(jobs)!r}, '--workflow', 'example_workflows/decode_only.json', "
                  f"'--out', {str(tmp_path / 'out')!r}]))")
    assert done.returncode == 2
    assert "the render farm (python -m streamvae farm) needs the Python package 'ray'" in done.stderr
    assert 'Install the farm extra: pip install "comfyui-streamvae[farm]"' in done.stderr
