"""What the pack exposes, checked: HTTP routes (none added), the static web folder (serves only itself), the live
messages (only to the client that queued), the G7e recipe (loopback only, no CORS, no secrets in the repo, the
unit or the log)."""

from __future__ import annotations

import http.client
import re
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACK_SOURCES = [REPO / "__init__.py", *sorted((REPO / "comfy_nodes").rglob("*.py")),
                *sorted((REPO / "streamvae").rglob("*.py"))]


def test_pack_adds_no_http_routes():
    """ComfyUI extensions add routes through PromptServer.instance.routes or aiohttp's router. The pack adds none,
    so the only new surface is its static web folder. A route added later must come with its own input checks
    and tests; this test makes that a deliberate change. (streamvae/client/ is the client side: it calls
    ComfyUI's routes, it serves none.)"""
    pattern = re.compile(r"\broutes\.(get|post|put|delete|patch|route|static)\b|add_route|router\.add|"
                         r"web\.(get|post|static)\(|@routes\.")
    served = [path for path in PACK_SOURCES if REPO / "streamvae" / "client" not in path.parents]
    found = [f"{path.relative_to(REPO)}:{number}" for path in served
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, f"HTTP routes added by the pack: {found}"


def test_web_extension_writes_no_html_from_messages():
    """The extension shows server data with textContent and an <img> data URL, never as HTML."""
    for path in (REPO / "web").rglob("*.js"):
        text = path.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", text), path


def _get(url: str, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation of '..' or %2e)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_web_folder_serves_only_its_own_files(rel_server):
    base = "/extensions/ComfyUI-StreamVAE/"
    status, body = _get(rel_server.url, base + "streamvae.js")
    assert status == 200 and body == (REPO / "web" / "streamvae.js").read_bytes()
    served = {path.read_bytes() for path in (REPO / "web").rglob("*") if path.is_file()}
    for attempt in ["../ComfyUI-StreamVAE/__init__.py", "..%2f__init__.py", "%2e%2e/__init__.py",
                    "%2e%2e%2f%2e%2e%2fcomfy_nodes%2f__init__.py", "..%5c__init__.py", "../../main.py",
                    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "....//__init__.py"]:
        status, body = _get(rel_server.url, base + attempt)
        assert status != 200 or body in served, (attempt, status, body[:80])


# --------------------------------------------------------------------------- symbolic links in the output folder


def test_symlink_in_the_output_folder_is_not_followed_out_of_it(rel_client, rel_server, tmp_path):
    """ComfyUI's own check compares absolute paths, not real ones: a link inside the output folder that points
    elsewhere would take the video there. The save node refuses, whether the link is named in the prefix (at
    validation), arrives by a linked prefix (at run time) or is named by ComfyUI's %width% substitution (after
    ComfyUI names the folder); a link that stays inside the output folder still works."""
    from streamvae.client import PromptRejected
    from support.graphs import WIDTH, error_message, saved_files, streaming_prompt

    outside, inside = tmp_path / "outside", rel_server.tree.output / f"real_{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    inside.mkdir()
    tag = uuid.uuid4().hex[:8]
    links = {name: rel_server.tree.output / name for name in (f"out_{tag}", f"w{WIDTH}_{tag}", f"in_{tag}")}
    links[f"out_{tag}"].symlink_to(outside, target_is_directory=True)
    links[f"w{WIDTH}_{tag}"].symlink_to(outside, target_is_directory=True)
    links[f"in_{tag}"].symlink_to(inside, target_is_directory=True)
    try:
        with pytest.raises(PromptRejected) as rejected:
            rel_client.queue(streaming_prompt("wan21", filename_prefix=f"out_{tag}/sub/clip"))
        (error,) = rejected.value.node_errors["save"]["errors"]
        assert_names_the_link(error["details"], f"out_{tag}/sub/clip", outside)

        linked = streaming_prompt("wan21")
        linked["prefix"] = {"class_type": "PrimitiveString", "inputs": {"value": f"out_{tag}/clip"}}
        linked["save"]["inputs"]["filename_prefix"] = ["prefix", 0]
        substituted = streaming_prompt("wan21", filename_prefix=f"w%width%_{tag}/clip")
        for prompt, prefix in ((linked, f"out_{tag}/clip"), (substituted, f"w%width%_{tag}/clip")):
            run = rel_client.run_prompt(prompt, timeout=300)
            assert run.status == "error", run.types
            assert_names_the_link(error_message(run), prefix, outside)
        assert list(outside.rglob("*")) == [], "something was written outside the output folder"

        run = rel_client.run_prompt(streaming_prompt("wan21", filename_prefix=f"in_{tag}/clip"), timeout=300)
        assert run.status == "success", run.types
        (saved,) = saved_files(run, rel_server.tree.output)
        assert (inside / saved.name).is_file()
    finally:
        for link in links.values():
            link.unlink()


def assert_names_the_link(message: str, prefix: str, target: Path):
    assert "--output-directory" in message and "Traceback" not in message
    if f"filename_prefix {prefix!r} leads out of ComfyUI's output folder through a symbolic link" in message:
        assert str(target.resolve()) in message  # our own check found the link, and names where it leads
    else:  # releases whose save-path check follows links (v0.33.0 on) refuse it first; we say what that means
        assert f"filename_prefix {prefix!r} leads out of ComfyUI's output folder" in message, message
        assert "symbolic link" in message


# --------------------------------------------------------------------------- the G7e recipe and the repository

SCRIPT = REPO / "deploy" / "g7e" / "setup.sh"


def test_g7e_recipe_binds_loopback_only_without_cors(tmp_path):
    text = SCRIPT.read_text()
    listens = re.findall(r"--listen\s+(\S+)", text)
    assert listens and set(listens) == {"127.0.0.1"}, listens
    # --enable-cors-header would let any web page the user opens drive the tunnelled server (ComfyUI's own
    # origin check protects loopback only without it); --listen without an address binds every interface.
    assert "--enable-cors-header" not in text and "0.0.0.0" not in text and "--listen ::" not in text
    assert not re.search(r"--listen(\s*$|\s+--)", text, re.MULTILINE)
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "comfy")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (exec_start,) = [line for line in done.stdout.splitlines() if "ExecStart=" in line]
    assert "--listen 127.0.0.1" in exec_start


def test_g7e_recipe_keeps_secrets_out_of_the_log(tmp_path):
    """No xtrace (it would print every expanded variable), and a token in the environment never reaches the
    dry-run output or the systemd unit (journald would keep it)."""
    text = SCRIPT.read_text()
    assert not re.search(r"set\s+-[a-z]*x|set\s+-o\s+xtrace|bash\s+-x", text)
    secret = "hf_" + "S3cr3tT0kenThatMustNotLeak0123456789"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret,
           "AWS_SECRET_ACCESS_KEY": secret}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "comfy")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr


def _secret_patterns() -> list[re.Pattern]:
    # Built from pieces so that this file does not match itself.
    return [re.compile(piece) for piece in (
        "AKIA" + "[0-9A-Z]{16}", "-----BEGIN [A-Z ]*" + "PRIVATE KEY-----", "hf_" + "[A-Za-z0-9]{34,}",
        "gh[pousr]_" + "[A-Za-z0-9]{36}", "xox[abpr]-" + "[A-Za-z0-9-]{10,}", "sk-" + "[A-Za-z0-9]{40,}")]


def test_no_secrets_committed():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in listed.decode().split("\0") if name]
    if not files:
        pytest.skip("not a git checkout")
    hits = []
    for path in files:
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        hits += [f"{path.relative_to(REPO)}: {pattern.pattern}" for pattern in _secret_patterns()
                 if pattern.search(text)]
    assert not hits, hits
