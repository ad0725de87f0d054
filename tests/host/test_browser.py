"""The web extension in a real browser: Debian's chromium, headless, driven by Playwright with the system binary.

Open the page the test server serves, load a graph with our nodes, queue it from the page, and watch the Save
Video (Streaming) node: live stats and frames while it decodes, then the stats line stays and the finished video
plays in the node, with the classic nodes and with the frontend's Vue nodes. A Save Video (Streaming) inside a
subgraph (execution id "10:8") gets its stats too. A screenshot is kept under test-artifacts/; with
STREAMVAE_UPDATE_DOCS_SCREENSHOT=1 it also replaces docs/images/graph.png, the README's picture.
"""

import os
import shutil
from pathlib import Path

import pytest

from streamvae.files import comfyui_release
from support.comfy_server import REPO_ROOT, WAN21_VAE, ComfyServer
from support.graphs import FRAMES as SUBGRAPH_FRAMES, subgraph_workflow
from test_workflows_frontend import STARTUP_WORKFLOW_OPEN

CHROMIUM = Path(os.environ.get("STREAMVAE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "images" / "graph.png"
WIDTH, HEIGHT, FRAMES = 160, 96, 13  # big enough to see in the screenshot, small enough for 2 CPU cores

playwright_sync = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                                      "(pip install playwright; the system chromium is used, no browser download)")
if not CHROMIUM.is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set STREAMVAE_CHROMIUM)",
                allow_module_level=True)

# Records what the extension draws, as it happens: live states are gone by the time a poll could look.
WATCH_EXTENSION = """() => {
  window.__streamvae = {decoding: false, preview: false, lines: []};
  new MutationObserver(() => {
    const stats = document.querySelector('.streamvae-stats');
    const frame = document.querySelector('.streamvae-live-frame');
    const seen = window.__streamvae;
    if (stats && stats.textContent && seen.lines.at(-1) !== stats.textContent) seen.lines.push(stats.textContent);
    if (stats && stats.textContent.startsWith('Decoding:')) seen.decoding = true;
    if (frame && frame.style.display !== 'none' && (frame.src || '').startsWith('data:image/jpeg')) seen.preview = true;
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""

# The minimap would cover the Save node in the screenshot.
HIDE_MINIMAP = "() => window.comfyAPI.app.app.extensionManager?.setting?.set('Comfy.Minimap.Visible', false)"

# The saved video's player: in the node's preview (classic nodes) or its media area (Vue nodes).
FIND_SAVED_VIDEO = "[...document.querySelectorAll('video')].find((video) => video.src.includes('StreamVAE'))"

PLAY_VIDEO = """async () => {
  const video = """ + FIND_SAVED_VIDEO + """;
  video.muted = true;
  await video.play();
  await new Promise((resolve) => setTimeout(resolve, 600));
  return {time: video.currentTime, paused: video.paused, width: video.videoWidth, height: video.videoHeight,
          src: video.src};
}"""


def browser_graph(container: str, codec: str) -> dict:
    """API format with numeric ids (the frontend's loadApiJson keeps them as node ids)."""
    return {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": WAN21_VAE}},
        "2": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": WIDTH, "height": HEIGHT, "length": FRAMES, "batch_size": 1}},
        "3": {"class_type": "StreamVAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0], "mode": "exact"}},
        "4": {"class_type": "StreamVAESaveVideo", "inputs": {
            "frames": ["3", 0], "fps": 16, "filename_prefix": "browser/StreamVAE", "container": container,
            "codec": codec, "crf": 23, "preset": "veryfast", "pix_fmt": "auto", "encoder": "auto",
            "embed_workflow": True}},
    }


# The newest frontend too, beside the one the host pins: newer ComfyUI releases pin newer frontends, and users update
# the frontend package ahead of ComfyUI. .ci/setup-hosts unpacks it and .ci/run names its folder here.
NEWEST_FRONTEND = os.environ.get("STREAMVAE_NEWEST_FRONTEND")
# Older hosts lack the server routes today's frontends call; users of those releases run the frontend they pin.
OLDEST_HOST_FOR_THE_NEWEST_FRONTEND = (0, 33)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@pytest.fixture(scope="module")
def newest_frontend_server(comfyui_path, comfy_tree):
    if not NEWEST_FRONTEND:
        pytest.skip("no newest frontend given: set STREAMVAE_NEWEST_FRONTEND to the static/ folder of a "
                    "comfyui-frontend-package wheel (.ci/setup-hosts unpacks one)")
    release = comfyui_release(comfyui_path)
    if version_tuple(release) < OLDEST_HOST_FOR_THE_NEWEST_FRONTEND:
        pytest.skip(f"ComfyUI {release} is older than the releases today's frontend serves; "
                    "its own pinned frontend is tested")
    server = ComfyServer(comfyui_path, comfy_tree, extra_args=("--front-end-root", NEWEST_FRONTEND),
                         log_name="server-newest-frontend.log").start()
    yield server
    server.stop()


@pytest.fixture(params=["host's frontend", "newest frontend"])
def page_server(request):
    """The server whose page the browser opens: the host's own frontend, then the newest one."""
    return request.getfixturevalue("comfy_server" if request.param == "host's frontend" else "newest_frontend_server")


@pytest.fixture
def page(page_server):
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_server.url, wait_until="domcontentloaded")
            page.wait_for_function("() => window.comfyAPI?.app?.app?.graph && "
                                   "window.LiteGraph?.registered_node_types?.StreamVAESaveVideo", timeout=60_000)
            page.wait_for_function(STARTUP_WORKFLOW_OPEN, timeout=60_000)
            page.page_errors = errors
            yield page
        finally:
            browser.close()


# Frontend 1.27.10 (ComfyUI 0.3.64) draws nothing of a graph with Vue nodes on, and throws "Cannot read
# properties of undefined (reading 'id')"; 1.35.9 (0.8.0) and 1.48.7 (0.33.0) draw it.
FIRST_WORKING_VUE_NODES = (1, 35)
# 1.35.9's Vue nodes show no player for the saved video in the node; 1.48.7's do.
FIRST_VUE_NODES_WITH_A_PLAYER = (1, 48)


def frontend_version(page) -> tuple[int, ...]:
    return version_tuple(page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ ?? '0'"))


def playable_format(page) -> tuple[str, str]:
    """h264 in mp4 where this chromium plays it (builds without proprietary codecs don't), else AV1 in WebM."""
    h264 = page.evaluate("() => document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.640028\"')")
    return ("mp4", "h264") if h264 else ("webm", "av1")


def assert_the_saved_video_plays(page):
    page.wait_for_function(f"() => ({FIND_SAVED_VIDEO})?.readyState >= 2", timeout=60_000)
    played = page.evaluate(PLAY_VIDEO)
    assert played["time"] > 0 and not played["paused"], played
    assert (played["width"], played["height"]) == (WIDTH, HEIGHT)
    assert "browser%2FStreamVAE" in played["src"] or "subfolder=browser" in played["src"], played["src"]


@pytest.mark.parametrize("vue_nodes", [False, True], ids=["classic nodes", "Vue nodes"])
def test_live_stats_then_the_video_plays_in_the_node(page, page_server, comfy_server, vue_nodes):
    """In the classic canvas and with the frontend's Vue nodes ("Nodes 2.0"), which host DOM widgets and previews
    their own way."""
    if vue_nodes and frontend_version(page) < FIRST_WORKING_VUE_NODES:
        pytest.skip(f"frontend {'.'.join(map(str, frontend_version(page)))}: its Vue nodes (a beta then) draw no node of a loaded "
                    "graph at all, stock ones neither")
    container, codec = playable_format(page)
    page.evaluate("(on) => window.comfyAPI.app.app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on)",
                  vue_nodes)
    page.evaluate(WATCH_EXTENSION)
    page.evaluate("(graph) => window.comfyAPI.app.app.loadApiJson(graph, 'streamvae.json')",
                  browser_graph(container, codec))
    page.keyboard.press("Escape")  # close a first-run dialog, if the frontend opened one
    page.evaluate(HIDE_MINIMAP)
    page.evaluate("() => window.comfyAPI.app.app.queuePrompt(0, 1)")

    page.wait_for_function("() => window.__streamvae.decoding && window.__streamvae.preview", timeout=240_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "decoding.png"))
    page.wait_for_function("() => document.querySelector('.streamvae-stats')?.textContent.startsWith('Done:')",
                           timeout=240_000)
    stats = page.text_content(".streamvae-stats")
    assert f"{FRAMES}/{FRAMES} frames" in stats and "fps" in stats and "RTF" in stats and "GPU busy" in stats

    if not vue_nodes or frontend_version(page) >= FIRST_VUE_NODES_WITH_A_PLAYER:  # the player is the frontend's
        assert_the_saved_video_plays(page)
    # The stats line stays under the finished video.
    assert page.text_content(".streamvae-stats").startswith("Done:")
    assert not [error for error in page.page_errors if "streamvae" in error.lower()], page.page_errors

    version = ".".join(map(str, frontend_version(page)))
    screenshot = ARTIFACTS / f"graph{'-vue-nodes' if vue_nodes else ''}-frontend-{version}.png"
    page.screenshot(path=str(screenshot))
    if os.environ.get("STREAMVAE_UPDATE_DOCS_SCREENSHOT") == "1" and not vue_nodes and page_server is comfy_server:
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


# The Save Video (Streaming) node inside subgraph node 10, found as a user would open it.
INNER_SAVE_STATS = """() => {
  const app = window.comfyAPI.app.app;
  const subgraph = (app.rootGraph ?? app.graph).getNodeById(10)?.subgraph;
  const node = subgraph?.nodes.find((item) => item.comfyClass === 'StreamVAESaveVideo');
  return node?.streamvaeLive?.stats.textContent ?? '';
}"""


def test_a_save_node_inside_a_subgraph_gets_its_stats(page):
    page.evaluate("(workflow) => window.comfyAPI.app.app.loadGraphData(workflow, true, true, 'subgraph.json')",
                  subgraph_workflow(instance_values=[SUBGRAPH_FRAMES], filename_prefix="browser/subgraph"))
    page.wait_for_function("() => (window.comfyAPI.app.app.rootGraph ?? window.comfyAPI.app.app.graph)"
                           ".getNodeById(10)?.subgraph", timeout=30_000)
    page.evaluate("() => window.comfyAPI.app.app.queuePrompt(0, 1)")
    page.wait_for_function(f"() => ({INNER_SAVE_STATS})().startsWith('Done:')", timeout=240_000)
    assert f"{SUBGRAPH_FRAMES}/{SUBGRAPH_FRAMES} frames" in page.evaluate(INNER_SAVE_STATS)
    assert not [error for error in page.page_errors if "streamvae" in error.lower()], page.page_errors
