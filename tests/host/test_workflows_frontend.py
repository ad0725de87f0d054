"""The client's UI -> API conversion against the frontend's own: ComfyUI's page (headless chromium) loads each
workflow, reports what it can't load, and its graphToPrompt - what the Queue button sends - must equal ours. Each
host release is checked with its own frontend and its own template package.

Hand-made graphs cover what the bundled ones don't: a reroute, a PrimitiveNode driving a converted widget, a
bypassed node passed through, a muted node whose links must go, a note, and a seed widget's control value; a
subgraph whose instance sets an inner widget (by its own input, or promoted through properties.proxyWidgets); and,
where the release has them, a dynamic combo with nested options and an autogrow input.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from support.comfy_server import REPO_ROOT
from support.graphs import subgraph_workflow, without_titles
from streamvae.client import ComfyClient, ui_to_api

sys.path.insert(0, str(REPO_ROOT / "workflows"))
from build_workflows import template_path  # noqa: E402

CHROMIUM = Path(os.environ.get("STREAMVAE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NAMES = ["wan22_14b_t2v", "wan22_14b_i2v", "wan22_5b_ti2v", "decode_only"]
# The release's official Wan 2.2 templates (subgraphs with promoted widgets, switches and autogrow inputs in newer
# template packages), other templates with subgraphs and nested links through them, and the page's default graph
# (an old seed-control layout), where the release's package has them.
WAN_TEMPLATES = ["video_wan2_2_14B_t2v.json", "video_wan2_2_14B_i2v.json", "video_wan2_2_5B_ti2v.json"]
OTHER_TEMPLATES = ["image_qwen_image_edit_2509.json", "image_qwen_image_instantx_controlnet.json",
                   "image_flux.1_fill_dev_OneReward.json", "flux1_dev_uso_reference_image_gen.json", "default.json"]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed "
                                      "(pip install playwright; the system chromium is used, no browser download)")
if not CHROMIUM.is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set STREAMVAE_CHROMIUM)",
                allow_module_level=True)

# The page opens its start-up workflow once the app is ready; a graph loaded before that would be replaced by it.
STARTUP_WORKFLOW_OPEN = "() => window.comfyAPI.app.app.extensionManager?.workflow?.activeWorkflow != null"

# Load a workflow as drag-and-drop does, then read back what the page made of it, once the root graph holds the
# workflow's nodes.
LOAD_AND_CONVERT = """async (workflow) => {
  const app = window.comfyAPI.app.app;
  const root = () => app.rootGraph ?? app.graph;
  const wanted = workflow.nodes.map((node) => String(node.id)).sort().join();
  await app.loadGraphData(workflow, true, true, 'test.json');
  for (let tries = 0; tries < 200 && root().nodes.map((node) => String(node.id)).sort().join() !== wanted; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const missing = root().nodes.filter((node) => !window.LiteGraph.registered_node_types[node.type])
                             .map((node) => node.type);
  const serialized = JSON.parse(JSON.stringify(root().serialize()));
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
            page.wait_for_function(STARTUP_WORKFLOW_OPEN, timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return ComfyClient(comfy_server.url).object_info()


@pytest.mark.parametrize("name", NAMES)
def test_page_loads_the_workflow_and_queues_our_api_twin(page, object_info, name):
    workflow = json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text())
    twin = json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    # Titles aside (each frontend names an untitled node with its own display name), and for the page's own re-save
    # of the file too.
    assert assert_converts_as_the_page_does(page, object_info, workflow) == without_titles(twin)


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
    try:
        return json.loads(template_path(name).read_text())
    except FileNotFoundError as error:
        pytest.skip(f"{error} (this release's template package)")


def assert_converts_as_the_page_does(page, object_info, workflow: dict) -> dict:
    """Ours equals the page's graphToPrompt, for the file and for the page's own re-save of it, titles aside; the
    page's prompt without titles."""
    loaded = page.evaluate(LOAD_AND_CONVERT, workflow)
    assert loaded["missing"] == []
    expected = without_titles(loaded["output"])
    assert without_titles(ui_to_api(workflow, object_info)) == expected
    assert without_titles(ui_to_api(loaded["serialized"], object_info)) == expected
    return expected


@pytest.mark.parametrize("name", WAN_TEMPLATES + OTHER_TEMPLATES)
def test_official_templates_convert_as_the_page_converts_them(page, object_info, name):
    assert_converts_as_the_page_does(page, object_info, template(name))


def test_the_releases_wan_templates_are_there():
    for name in WAN_TEMPLATES:
        assert template_path(name).is_file()


def frontend_version() -> tuple[int, ...]:
    """The version of the frontend this release's server serves (its pinned comfyui-frontend-package)."""
    import importlib.metadata  # noqa: PLC0415

    return tuple(int(part) for part in importlib.metadata.version("comfyui-frontend-package").split(".")[:2])


def test_a_subgraph_instance_sets_its_inner_widgets_as_the_page_does(page, object_info):
    # The instance's value for the definition's own input (length), by position among the inputs feeding widgets.
    output = assert_converts_as_the_page_does(page, object_info, subgraph_workflow(instance_values=[9]))
    assert output["10:3"]["inputs"]["length"] == 9 and output["10:6"]["inputs"]["vae"] == ["1", 0]


def test_without_an_instance_value_the_inner_widget_keeps_its_own(page, object_info):
    if frontend_version() < (1, 35):
        # Frontend 1.27 sends the inner node's first widget value (the width, 64) for the length.
        pytest.skip("this release's frontend (before 1.35) fills an unset instance widget with another value")
    output = assert_converts_as_the_page_does(page, object_info, subgraph_workflow())
    assert output["10:3"]["inputs"]["length"] == 5


@pytest.mark.parametrize("as_text", [False, True], ids=["list", "json-string"])
def test_promoted_widgets_convert_as_the_page_converts_them(page, object_info, as_text):
    if frontend_version() < (1, 48):
        # 1.27 has no promoted widgets; 1.35 has them but queues the inner node's own value, saving the instance's
        # as null (which the client then ignores: the official templates of that release check that).
        pytest.skip("this release's frontend (before 1.48) does not queue an instance's values for promoted widgets")
    proxies = [["-1", "length"], ["8", "filename_prefix"]]
    workflow = subgraph_workflow(instance_values=[9, "sub/promoted"],
                                 proxies=json.dumps(proxies) if as_text else proxies)
    output = assert_converts_as_the_page_does(page, object_info, workflow)
    assert output["10:3"]["inputs"]["length"] == 9
    assert output["10:8"]["inputs"]["filename_prefix"] == "sub/promoted"


def dynamic_inputs_graph() -> dict:
    """A Math Expression with one autogrow input linked ("values.a") and one empty, and two Save Video nodes whose
    codec is a dynamic combo: one with its nested encoding and crf, one without the nested value saved."""
    nodes = [
        _node(30, "PrimitiveInt", [7, "fixed"], outputs=[out("INT", "INT", [30])]),
        _node(31, "ComfyMathExpression", ["a * 2"],
              inputs=[inp("values.a", "FLOAT,INT,BOOLEAN", 30), inp("values.b", "FLOAT,INT,BOOLEAN", None)],
              outputs=[out("FLOAT", "FLOAT", []), out("INT", "INT", []), out("BOOL", "BOOLEAN", [])]),
        _node(32, "SaveVideo", ["video/edge", "mp4", "h264", "re-encode", 20], inputs=[inp("video", "VIDEO", None)]),
        _node(33, "SaveVideo", ["video/edge2", "auto", "h264"], inputs=[inp("video", "VIDEO", None)]),
    ]
    return {"last_node_id": 33, "last_link_id": 30, "nodes": nodes, "links": [[30, 30, 0, 31, 0, "INT"]],
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def test_dynamic_combos_and_autogrow_inputs_convert_as_the_page_converts_them(page, object_info):
    codec = object_info["SaveVideo"]["input"]["required"]["codec"][0]
    if "ComfyMathExpression" not in object_info or codec != "COMFY_DYNAMICCOMBO_V3":
        pytest.skip("this release has no autogrow Math Expression or no dynamic-combo Save Video codec")
    output = assert_converts_as_the_page_does(page, object_info, dynamic_inputs_graph())
    assert output["31"]["inputs"] == {"expression": "a * 2", "values.a": ["30", 0]}
    assert output["32"]["inputs"]["codec.encoding.crf"] == 20
    assert output["33"]["inputs"]["codec.encoding"] == "auto"  # the nested combo's default
