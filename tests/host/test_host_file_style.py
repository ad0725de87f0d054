"""What each ComfyUI release's own Save Video code writes, as the nodes learn it (streamvae.file_style), pinned per
release: when a release changes how it lays out or colour-describes files, this fails, and the change is looked at
(test_nodes_save.py then checks that exact mode still writes that release's bytes)."""

import json
import subprocess
import sys

import pytest

from streamvae.files import comfyui_release as comfyui_version
from support.comfy_server import REPO_ROOT
from streamvae.file_style import ColourTags, FileStyle

EXPECTED = {
    "0.3.64": FileStyle(("use_metadata_tags",)),
    "0.8.0": FileStyle(("use_metadata_tags",)),
    "0.33.0": FileStyle(("use_metadata_tags", "faststart")),  # mp4_output_open_kwargs: faststart for file paths
}

LEARN = """
import dataclasses, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from streamvae.file_style import comfyui_save_video_writer, learn_file_style
print(json.dumps(dataclasses.asdict(learn_file_style(comfyui_save_video_writer()))))
"""


def learnt_style(comfyui) -> FileStyle:
    """Asked in a process of its own, with ComfyUI's folder first on the path, as the server has it."""
    done = subprocess.run([sys.executable, "-c", LEARN, str(comfyui), str(REPO_ROOT)], cwd=comfyui,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    fields = json.loads(done.stdout.strip().splitlines()[-1])
    tags = ColourTags(**fields["tags"]) if fields["tags"] else None
    return FileStyle(tuple(fields["movflags"]), fields["matrix"], tags, tuple(fields["notes"]))


def test_the_release_writes_files_as_recorded(comfyui_path):
    version = comfyui_version(comfyui_path)
    style = learnt_style(comfyui_path)
    assert not style.notes, style.notes
    if version not in EXPECTED:
        pytest.fail(f"ComfyUI {version}'s Save Video writes {style.describe()}; record it in EXPECTED after "
                    "checking test_nodes_save.py's byte comparison passes on it")
    assert style == EXPECTED[version], f"ComfyUI {version}'s Save Video now writes {style.describe()}"


def test_the_server_logs_the_style_it_follows(comfy_server, comfy_client):
    """The nodes learn it on the first save; the log says what they follow."""
    from support.graphs import saved_files, streaming_prompt  # noqa: PLC0415 - host-test helpers

    run = comfy_client.run_prompt(streaming_prompt("wan21", filename_prefix="style/clip", preset="ultrafast"), timeout=300)
    assert run.status == "success", run.of_type("execution_error")
    assert saved_files(run, comfy_server.tree.output)[0].is_file()
    expected = EXPECTED.get(comfyui_version(comfy_server.comfyui), FileStyle()).describe()
    assert f"this ComfyUI's Save Video writes {expected}; exact mode follows it" in comfy_server.log_text()
