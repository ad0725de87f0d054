"""The client's UI -> API conversion against the frontend's own: ComfyUI's page (headless chromium) loads each
workflow, reports what it can't load, and its graphToPrompt - what the Queue button sends - must equal ours.

A hand-made graph covers what the bundled ones don't: a reroute, a PrimitiveNode driving a converted widget, a
bypassed node passed through, a muted node whose links must go, a note, and a seed widget's control value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.comfy_server import REPO_ROOT
from streamvae.client import ComfyClient, ui_to_api

CHROMIUM = Path(os.environ.get("STREAMVAE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NAMES = ["wan22_14b_t2v", "wan22_14b_i2v", "wan22_5b_ti2v", "decode_only"]
# Official templates (comfyui_workflow_templates) with subgraphs, nested links through them and promoted widgets,
# plus the templates ours are built from and the page's default graph (an old seed-control layout).
TEMPLATES = ["image_qwen_image_edit_2509.json", "image_qwen_image_instantx_controlnet.json",
             "image_flux.1_fill_dev_OneReward.json", "flux1_dev_uso_reference_image_gen.json",
             "video_wan2_2_14B_t2v.json", "video_wan2_2_14B_i2v.json", "video_wan2_2_5B_ti2v.json", "default.json"]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                                      "(pip install playwright; the system chromium is used, no browser download)")
if not CHROMIUM.is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set STREAMVAE_CHROMIUM)",
                allow_module_level=True)

# Load a workflow as drag-and-drop does, then read back what the page made of it.
LOAD_AND_CONVERT = """async (workflow) => {
  const app = window.comfyAPI.app.app;
  await app.loadGraphData(workflow, true, true, 'test.json');
  const missing = app.graph.nodes.filter((node) => !window.LiteGraph.registered_node_types[node.type])
                                  .map((node) => node.type);
  const serialized = JSON.parse(JSON.stringify(app.graph.serialize()));
  const {output} = await app.graphToPrompt();
  return {missing, serialized, output: JSON.parse(JSON.stringify(output))};
}"""


def _node(node_id, node_type, widgets=(), inputs=(), outputs=(), mode=0, **extra):
    return {"id": node_id, "type": node_type, "pos": [node_id * 220, 100], "size": [200, 100], "flags": {},
            "order": node_id, "mode": mode, "inputs": list(inputs), "outputs": list(outputs), "properties": {},
            "widgets_values": list(widgets), **extra}


def out(name, kind, links, **more):
    return {"name": name, "type": kind, "links": links, **more}


def inp(name, kind, link, **more):
    return {"name": name, "type": kind, "link": link, **more}


def edge_case_graph() -> dict:
    """VAELoader -> Reroute -> decode.vae; latent -> bypassed RepeatLatentBatch -> decode.samples;
    PrimitiveNode -> latent.length (a converted widget); muted EmptyImage -> save.images; a note; a seed control."""
    nodes = [
        _node(1, "VAELoader", ["tiny_wan21_vae.safetensors"], outputs=[out("VAE", "VAE", [1])]),
        _node(2, "Reroute", inputs=[inp("", "*", 1)], outputs=[out("", "VAE", [2])]),
        _node(3, "EmptyHunyuanLatentVideo", [64, 48, 5, 1], inputs=[inp("length", "INT", 3, widget={"name": "length"})],
              outputs=[out("LATENT", "LATENT", [4])]),
        _node(4, "PrimitiveNode", [9, "fixed"], outputs=[out("INT", "INT", [3], widget={"name": "length"})],
              title="length"),
        _node(5, "RepeatLatentBatch", [2], inputs=[inp("samples", "LATENT", 4)], outputs=[out("LATENT", "LATENT", [5])],
              mode=4),
        _node(6, "StreamVAEDecode", ["exact"], inputs=[inp("samples", "LATENT", 5), inp("vae", "VAE", 2)],
              outputs=[out("FRAME_STREAM", "FRAME_STREAM", [6])]),
        _node(7, "EmptyImage", [64, 48, 5, 0], outputs=[out("IMAGE", "IMAGE", [7])], mode=2),
        _node(8, "StreamVAESaveVideo", [16, "edge/case", "mp4", "h264", 19, "ultrafast", "auto", "auto", True],
              inputs=[inp("frames", "FRAME_STREAM", 6, shape=7), inp("images", "IMAGE", 7, shape=7),
                      inp("audio", "AUDIO", None, shape=7)],
              outputs=[out("video", "VIDEO", []), out("path", "STRING", [])], title="My save"),
        _node(9, "Note", ["a note, never sent"]),
        _node(10, "RandomNoise", [1234, "randomize"], outputs=[out("NOISE", "NOISE", [])]),
    ]
    links = [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 6, 1, "VAE"], [3, 4, 0, 3, 0, "INT"], [4, 3, 0, 5, 0, "LATENT"],
             [5, 5, 0, 6, 0, "LATENT"], [6, 6, 0, 8, 0, "FRAME_STREAM"], [7, 7, 0, 8, 1, "IMAGE"]]
    return {"last_node_id": 10, "last_link_id": 7, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


@pytest.fixture(scope="module")
def page(comfy_server):
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(comfy_server.url, wait_until="domcontentloaded")
            page.wait_for_function("() => window.comfyAPI?.app?.app?.graph && "
                                   "window.LiteGraph?.registered_node_types?.StreamVAESaveVideo", timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return ComfyClient(comfy_server.url).object_info()


@pytest.mark.parametrize("name", NAMES)
def test_page_loads_the_workflow_and_queues_our_api_twin(page, object_info, name):
    workflow = json.loads((REPO_ROOT / "workflows" / f"{name}.json").read_text())
    loaded = page.evaluate(LOAD_AND_CONVERT, workflow)
    assert loaded["missing"] == []
    twin = json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    assert loaded["output"] == twin
    # And the page's own re-save of the file converts the same way.
    assert ui_to_api(loaded["serialized"], object_info) == twin


def test_edge_cases_convert_as_the_page_converts_them(page, object_info):
    loaded = page.evaluate(LOAD_AND_CONVERT, edge_case_graph())
    assert loaded["missing"] == []
    ours = ui_to_api(edge_case_graph(), object_info)
    assert ours == loaded["output"]
    assert ui_to_api(loaded["serialized"], object_info) == loaded["output"]
    # What that means, spelled out:
    assert (ours["6"]["inputs"]["samples"], ours["6"]["inputs"]["vae"]) == (["3", 0], ["1", 0])  # bypass, reroute
    assert ours["3"]["inputs"]["length"] == 9  # the primitive's value
    assert "images" not in ours["8"]["inputs"] and ours["8"]["_meta"]["title"] == "My save"  # muted source gone
    assert ours["10"]["inputs"] == {"noise_seed": 1234}  # the control value is not an input
    assert set(ours) == {"1", "3", "6", "8", "10"}


def template(name: str) -> dict:
    import comfyui_workflow_templates  # noqa: PLC0415 - ships with ComfyUI's requirements

    return json.loads((Path(comfyui_workflow_templates.__file__).parent / "templates" / name).read_text())


def without_titles(prompt: dict) -> dict:
    """The prompt less `_meta`: the server ignores it, and the page titles an untitled node with its own translated
    display name, which /object_info doesn't carry."""
    return {node_id: {key: value for key, value in node.items() if key != "_meta"} for node_id, node in prompt.items()}


@pytest.mark.parametrize("name", TEMPLATES)
def test_official_templates_convert_as_the_page_converts_them(page, object_info, name):
    workflow = template(name)
    loaded = page.evaluate(LOAD_AND_CONVERT, workflow)
    assert loaded["missing"] == []
    expected = without_titles(loaded["output"])
    assert without_titles(ui_to_api(workflow, object_info)) == expected
    assert without_titles(ui_to_api(loaded["serialized"], object_info)) == expected
