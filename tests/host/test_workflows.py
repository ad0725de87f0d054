"""The bundled workflows against a real ComfyUI: each UI file converts to its API twin, and the Wan 2.2 graphs pass the
server's own /prompt validation (node types, inputs, links, combo values, files) with stand-in model files.

Real weights can't be downloaded here, so the stand-ins are tiny files with the exact names the workflows use, in a
models tree of a server of our own: the session's shared server keeps its tree as the other tests expect it.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from PIL import Image

from support import comfy_server as host
from support.graphs import without_titles
from streamvae.client import ComfyClient, Overrides, PromptRejected, ui_to_api

WORKFLOWS = host.REPO_ROOT / "workflows"  # the builder, the API twins and the models list
EXAMPLES = host.REPO_ROOT / "example_workflows"  # the UI files, which ComfyUI lists as the pack's templates
NAMES = ["wan22_14b_t2v", "wan22_14b_i2v", "wan22_5b_ti2v", "decode_only"]
WAN22_GRAPHS = ["wan22_14b_t2v", "wan22_14b_i2v", "wan22_5b_ti2v"]
STANDIN_FOLDERS = ("diffusion_models", "text_encoders", "loras", "vae")


def ui_workflow(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def api_twin(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def models_list() -> list[tuple[str, str]]:
    """(folder, file) for every model in workflows/models.tsv."""
    rows = [line.split("\t") for line in (WORKFLOWS / "models.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return [(row[0], row[1]) for row in rows]


@pytest.fixture(scope="module")
def standin_server(comfyui_path, tmp_path_factory):
    """A second server whose models tree holds a stand-in for every file in workflows/models.tsv."""
    tree = host.make_host_tree(tmp_path_factory.mktemp("standin_models"), comfyui_path)
    with tree.extra_model_paths.open("a") as yaml:
        for folder in STANDIN_FOLDERS[:-1]:  # vae is in the tree already
            yaml.write(f"    {folder}: models/{folder}\n")
    for folder, name in models_list():
        (tree.models / folder).mkdir(parents=True, exist_ok=True)
        (tree.models / folder / name).write_bytes(b"stand-in: validation only, never loaded")
    Image.new("RGB", (64, 64), (40, 90, 160)).save(tree.input / "example.png")  # LoadImage's file, as ComfyUI ships
    server = host.ComfyServer(comfyui_path, tree).start()
    yield server
    server.stop()


@pytest.fixture
def standin_client(standin_server):
    return ComfyClient(standin_server.url)


def test_every_workflow_has_both_formats():
    ui_files = sorted(path.stem for path in EXAMPLES.glob("*.json"))
    api_files = sorted(path.stem for path in (WORKFLOWS / "api").glob("*.json"))
    assert ui_files == api_files == sorted(NAMES)
    assert not list(WORKFLOWS.glob("*.json"))  # ComfyUI would list a second folder's files as templates too


def test_the_page_lists_each_workflow_once_under_the_packs_templates(standin_server):
    def get(path):
        with urllib.request.urlopen(standin_server.url + path, timeout=30) as response:
            return json.loads(response.read())

    assert sorted(get("/workflow_templates")[host.PACK_NAME]) == sorted(NAMES)
    assert get(f"/api/workflow_templates/{host.PACK_NAME}/decode_only.json") == ui_workflow("decode_only")


@pytest.mark.parametrize("name", NAMES)
def test_ui_file_converts_to_its_api_twin(standin_client, name):
    assert without_titles(ui_to_api(ui_workflow(name), standin_client.object_info())) == without_titles(api_twin(name))


@pytest.mark.parametrize("name", NAMES)
def test_ui_file_loads_with_no_missing_nodes(standin_client, name):
    """The page reports missing nodes for types /object_info lacks; frontend-only notes and reroutes aside."""
    known = set(standin_client.object_info()) | {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    workflow = ui_workflow(name)
    assert {node["type"] for node in workflow["nodes"]} <= known
    for node in workflow["nodes"]:  # every widget of our nodes has its value, in order
        if node["type"].startswith("StreamVAE"):
            widgets = [name for group in ("required", "optional")
                       for name, spec in standin_client.object_info()[node["type"]]["input"].get(group, {}).items()
                       if spec[0] not in ("LATENT", "VAE", "FRAME_STREAM", "IMAGE", "AUDIO")]
            assert len(node["widgets_values"]) == len(widgets), node["type"]


@pytest.mark.parametrize("name", WAN22_GRAPHS)
def test_wan22_graph_passes_server_validation(standin_client, name):
    prompt = standin_client.validate(ui_workflow(name))
    assert without_titles(prompt) == without_titles(api_twin(name))
    standin_client.validate(api_twin(name))  # the API file on its own, as a script would send it


@pytest.mark.parametrize("name, decode_vae, frames, fps", [
    ("wan22_14b_t2v", "wan_2.1_vae.safetensors", 81, 16),
    ("wan22_14b_i2v", "wan_2.1_vae.safetensors", 81, 16),
    ("wan22_5b_ti2v", "wan2.2_vae.safetensors", 121, 24),
])
def test_wan22_graph_streams_the_decode_as_the_template_decoded(name, decode_vae, frames, fps):
    """What the template fed VAE Decode now feeds VAE Decode (Streaming); the save node has the template's fps."""
    prompt = api_twin(name)
    (decode,) = [node for node in prompt.values() if node["class_type"] == "StreamVAEDecode"]
    (save,) = [node for node in prompt.values() if node["class_type"] == "StreamVAESaveVideo"]
    assert prompt[decode["inputs"]["vae"][0]]["inputs"]["vae_name"] == decode_vae
    assert prompt[decode["inputs"]["samples"][0]]["class_type"] in ("KSamplerAdvanced", "KSampler")
    assert prompt[save["inputs"]["frames"][0]] is decode and save["inputs"]["fps"] == fps
    assert not {"VAEDecode", "CreateVideo", "SaveVideo"} & {node["class_type"] for node in prompt.values()}
    (size,) = [node["inputs"] for node in prompt.values() if "length" in node["inputs"]]
    assert size["length"] == frames


@pytest.mark.parametrize("name, high, low", [
    ("wan22_14b_t2v", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
     "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors"),
    ("wan22_14b_i2v", "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
     "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors"),
])
def test_14b_graphs_keep_the_templates_4_step_switch(name, high, low):
    """As the template: the 4-step LoRA graph is live; the 20-step graph is there, bypassed, for Ctrl+B."""
    prompt = api_twin(name)
    nodes = prompt.values()
    assert sorted(node["inputs"]["lora_name"] for node in nodes if node["class_type"] == "LoraLoaderModelOnly") == \
        sorted([high, low])
    assert [node["inputs"]["steps"] for node in nodes if node["class_type"] == "KSamplerAdvanced"] == [4, 4]
    bypassed = [node for node in ui_workflow(name)["nodes"] if node["mode"] == 4]
    assert sorted(node["widgets_values"][3] for node in bypassed if node["type"] == "KSamplerAdvanced") == [20, 20]
    assert [node["type"] for node in bypassed if node["type"].startswith("StreamVAE")] == [
        "StreamVAEDecode", "StreamVAESaveVideo"]


def test_missing_model_is_rejected_with_the_input_and_the_fix(standin_client):
    overrides = Overrides(sets=[("Load VAE", "vae_name", "not_downloaded.safetensors")])
    with pytest.raises(PromptRejected) as rejected:
        standin_client.validate(ui_workflow("wan22_5b_ti2v"), overrides)
    assert rejected.value.node_errors["39"]["class_type"] == "VAELoader"
    message = str(rejected.value)
    assert "node 39 (Load VAE / VAELoader)" in message and "vae_name" in message
    assert "not_downloaded.safetensors" in message and "workflows/models.md" in message


def test_overrides_reach_the_right_inputs(standin_client):
    overrides = Overrides(prompt="a red fox in snow", negative="blurry", seed=7, width=832, height=480, length=49,
                          fps=12, sets=[("KSamplerAdvanced", "cfg", "1.5"), ("87", "mode", "fast")])
    prompt = standin_client.validate(ui_workflow("wan22_14b_i2v"), overrides)
    assert prompt["93"]["inputs"]["text"] == "a red fox in snow"  # positive: through WanImageToVideo
    assert prompt["89"]["inputs"]["text"] == "blurry"
    assert [prompt[i]["inputs"]["noise_seed"] for i in ("85", "86")] == [7, 7]
    assert {key: prompt["98"]["inputs"][key] for key in ("width", "height", "length")} == {
        "width": 832, "height": 480, "length": 49}
    assert prompt["108"]["inputs"]["fps"] == 12
    assert [prompt[i]["inputs"]["cfg"] for i in ("85", "86")] == [1.5, 1.5]  # a type matches both samplers
    assert prompt["87"]["inputs"]["mode"] == "fast"
