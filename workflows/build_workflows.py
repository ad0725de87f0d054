"""Rebuild the bundled workflows from ComfyUI's official Wan 2.2 templates.

    python workflows/build_workflows.py --server http://127.0.0.1:8188

Reads the templates from the `comfyui_workflow_templates` package (what ComfyUI's page offers under Templates),
swaps VAE Decode -> Create Video -> Save Video for VAE Decode (Streaming) -> Save Video (Streaming), sets the sizes
for a 96 GB card, and writes:

    example_workflows/NAME.json  UI format: drag onto the page; ComfyUI lists this folder under the pack's templates
                                 (the one folder of them: a second one would list every workflow twice)
    workflows/api/NAME.json      API format: the same graph as the page would queue it, converted by streamvae.client
                                 with the server's /object_info (the server must have this pack loaded)
    workflows/models.tsv         every model file the workflows name: folder, file, source URL, which workflows
    workflows/models.md          the same, for people

Everything else in the templates (models, LoRA switch, samplers, notes, groups) stays as Comfy-Org made it.

Which templates: the graphs every tested ComfyUI release (v0.3.64, v0.8.0, v0.33.0) loads. Up to
comfyui-workflow-templates 0.7.x (ComfyUI v0.8.0's) the Wan 2.2 templates are one flat graph; 0.11.x (v0.33.0's)
keeps the 5B one as it was but packs the 14B ones into a subgraph built on nodes older releases lack (Math
Expression, v0.33.0+). The bundled 14B workflows keep the flat graph, the same computation, so that they load on
all three: run this script in an environment with templates 0.7.x (it refuses a subgraph template, saying so).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "example_workflows"  # where ComfyUI looks for a pack's workflow templates
sys.path.insert(0, str(HERE.parent))
from streamvae.client import ComfyClient, ui_to_api, widget_inputs  # noqa: E402

PACK = {"cnr_id": "comfyui-streamvae", "ver": "0.1.0"}
VAE_URL = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/"
STREAMING_NOTE = (
    "**StreamVAE**: VAE Decode (Streaming) -> Save Video (Streaming) replace the template's VAE Decode -> Create Video "
    "-> Save Video. The video is decoded one latent frame at a time and encoded while the GPU decodes: memory stays "
    "flat however long the video.\n\nSizes here are set for a 96 GB card (g7e.2xlarge, RTX PRO 6000): {size}. "
    "On a 24 GB card use the official template's 640x640.")


def template_path(name: str) -> Path:
    """Where the official template file `name` (e.g. video_wan2_2_5B_ti2v.json) is installed: in the
    comfyui_workflow_templates package itself (up to 0.7.x), or in the bundle it names for it (0.11.x on)."""
    import comfyui_workflow_templates as templates  # noqa: PLC0415 - ships with ComfyUI's requirements

    inside = Path(templates.__file__).parent / "templates" / name
    if inside.is_file():
        return inside
    if hasattr(templates, "get_asset_path"):
        try:
            return Path(templates.get_asset_path(name.removesuffix(".json"), name))
        except (KeyError, FileNotFoundError):
            pass
    raise FileNotFoundError(f"the installed comfyui_workflow_templates has no {name}")


def template(name: str) -> dict:
    return json.loads(template_path(name).read_text())


def flat_template(name: str) -> dict:
    """A template whose graph every tested release loads: one flat graph, no subgraphs."""
    workflow = template(name)
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise SystemExit(f"{template_path(name)} packs its graph into a subgraph (comfyui-workflow-templates 0.11 and "
                         "later), built on nodes ComfyUI before v0.33.0 lacks; the bundled workflows keep the flat "
                         "graph. Run this script in ComfyUI v0.8.0's environment (templates 0.7.x).")
    return workflow


# --------------------------------------------------------------------------- graph edits (UI format)


class Editor:
    """Small, explicit edits of a litegraph document that keep its ids and link table consistent."""

    def __init__(self, workflow: dict):
        self.workflow = workflow

    def nodes(self, node_type: str) -> list[dict]:
        return [node for node in self.workflow["nodes"] if node["type"] == node_type]

    def node(self, node_id: int) -> dict:
        return next(node for node in self.workflow["nodes"] if node["id"] == node_id)

    def targets(self, node: dict, slot: int = 0) -> list[dict]:
        link_ids = set((node.get("outputs") or [{}])[slot].get("links") or [])
        return [self.node(link[3]) for link in self.workflow["links"] if link[0] in link_ids]

    def remove(self, node: dict):
        gone = {node["id"]}
        self.workflow["nodes"] = [item for item in self.workflow["nodes"] if item["id"] not in gone]
        dropped = {link[0] for link in self.workflow["links"] if link[1] in gone or link[3] in gone}
        self.workflow["links"] = [link for link in self.workflow["links"] if link[0] not in dropped]
        for item in self.workflow["nodes"]:
            for socket in item.get("inputs") or []:
                if socket.get("link") in dropped:
                    socket["link"] = None
            for socket in item.get("outputs") or []:
                if socket.get("links"):
                    socket["links"] = [link for link in socket["links"] if link not in dropped]

    def new_id(self) -> int:
        self.workflow["last_node_id"] = max(node["id"] for node in self.workflow["nodes"]) + 1
        return self.workflow["last_node_id"]

    def connect(self, origin: dict, origin_slot: int, target: dict, target_slot: int, kind: str):
        self.workflow["last_link_id"] = max([link[0] for link in self.workflow["links"]] + [0]) + 1
        link_id = self.workflow["last_link_id"]
        self.workflow["links"].append([link_id, origin["id"], origin_slot, target["id"], target_slot, kind])
        origin["outputs"][origin_slot].setdefault("links", []).append(link_id)
        target["inputs"][target_slot]["link"] = link_id

    def add(self, node: dict) -> dict:
        self.workflow["nodes"].append(node)
        return node


def stream_decode_node(node_id: int, pos, mode: int) -> dict:
    return {"id": node_id, "type": "StreamVAEDecode", "pos": pos, "size": [250, 80], "flags": {}, "order": 0,
            "mode": mode,
            "inputs": [{"name": "samples", "type": "LATENT", "link": None},
                       {"name": "vae", "type": "VAE", "link": None}],
            "outputs": [{"name": "FRAME_STREAM", "type": "FRAME_STREAM", "links": []}],
            "properties": {**PACK, "Node name for S&R": "StreamVAEDecode"}, "widgets_values": {"mode": "exact"}}


def stream_save_node(node_id: int, pos, size, mode: int, fps: float, prefix: str) -> dict:
    optional = 7  # litegraph's shape for an optional socket
    return {"id": node_id, "type": "StreamVAESaveVideo", "pos": pos, "size": size, "flags": {}, "order": 0,
            "mode": mode,
            "inputs": [{"name": "frames", "shape": optional, "type": "FRAME_STREAM", "link": None},
                       {"name": "images", "shape": optional, "type": "IMAGE", "link": None},
                       {"name": "audio", "shape": optional, "type": "AUDIO", "link": None}],
            "outputs": [{"name": "video", "type": "VIDEO", "links": []},
                        {"name": "path", "type": "STRING", "links": []}],
            "properties": {**PACK, "Node name for S&R": "StreamVAESaveVideo"},
            "widgets_values": {"fps": fps, "filename_prefix": prefix}}


def order_our_widgets(workflow: dict, object_info: dict) -> dict:
    """Our nodes are built with {widget: value} for the values that matter; the page wants every widget's value, in
    the order the server declares them: the rest get the node's defaults, so a widget added to a node later comes in
    with its default when the workflows are rebuilt."""
    for node in workflow["nodes"]:
        if isinstance(node.get("widgets_values"), dict):
            chosen = node["widgets_values"]
            node["widgets_values"] = [chosen.get(widget.name, widget.default)
                                      for widget in widget_inputs(object_info[node["type"]])]
    return workflow


def stream_the_decodes(editor: Editor, prefix: str):
    """Each VAE Decode -> Create Video -> Save Video becomes VAE Decode (Streaming) -> Save Video (Streaming), in the
    same place and mode; SaveImage side outputs of the stock decode (bypassed in the templates) go."""
    for decode in editor.nodes("VAEDecode"):
        create = next(node for node in editor.targets(decode) if node["type"] == "CreateVideo")
        (save,) = editor.targets(create)
        fps = create["widgets_values"][0]
        inputs = [(link[1], link[2], link[4], link[5]) for link in editor.workflow["links"] if link[3] == decode["id"]]
        for node in [decode, create, save] + [node for node in editor.targets(decode) if node["type"] == "SaveImage"]:
            if node in editor.workflow["nodes"]:
                editor.remove(node)
        stream = editor.add(stream_decode_node(decode["id"], decode["pos"], decode["mode"]))
        for origin_id, origin_slot, target_slot, kind in inputs:
            editor.connect(editor.node(origin_id), origin_slot, stream, target_slot, kind)
        sink = editor.add(stream_save_node(save["id"], save["pos"], save["size"], save["mode"], fps, prefix))
        editor.connect(stream, 0, sink, 0, "FRAME_STREAM")


def set_widgets(editor: Editor, node_type: str, values: list):
    for node in editor.nodes(node_type):
        node["widgets_values"][:len(values)] = values


def add_note(editor: Editor, text: str, pos):
    editor.add({"id": editor.new_id(), "type": "MarkdownNote", "pos": pos, "size": [420, 200], "flags": {},
                "order": 0, "mode": 0, "inputs": [], "outputs": [], "title": "StreamVAE", "properties": {},
                "widgets_values": [text], "color": "#233", "bgcolor": "#355"})


def finish(workflow: dict, name: str) -> dict:
    workflow["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "comfyui-streamvae/workflows/" + name))
    workflow["revision"] = 0
    workflow["last_node_id"] = max(node["id"] for node in workflow["nodes"])
    workflow["last_link_id"] = max([link[0] for link in workflow["links"]] + [0])
    workflow["nodes"].sort(key=lambda node: node["id"])
    return workflow


# --------------------------------------------------------------------------- the four workflows


def wan22_14b_t2v() -> dict:
    editor = Editor(flat_template("video_wan2_2_14B_t2v.json"))
    stream_the_decodes(editor, "video/Wan2.2_14B_t2v")
    set_widgets(editor, "EmptyHunyuanLatentVideo", [1280, 720, 81, 1])
    add_note(editor, STREAMING_NOTE.format(size="1280x720, 81 frames, 16 fps"), [-480, -520])
    return finish(editor.workflow, "wan22_14b_t2v")


def wan22_14b_i2v() -> dict:
    editor = Editor(flat_template("video_wan2_2_14B_i2v.json"))
    stream_the_decodes(editor, "video/Wan2.2_14B_i2v")
    set_widgets(editor, "WanImageToVideo", [1280, 720, 81, 1])
    set_widgets(editor, "LoadImage", ["example.png"])  # ComfyUI ships input/example.png; the template's isn't
    add_note(editor, STREAMING_NOTE.format(size="1280x720, 81 frames, 16 fps"), [-480, -560])
    return finish(editor.workflow, "wan22_14b_i2v")


def wan22_5b_ti2v() -> dict:
    editor = Editor(flat_template("video_wan2_2_5B_ti2v.json"))
    stream_the_decodes(editor, "video/Wan2.2_5B_ti2v")
    set_widgets(editor, "Wan22ImageToVideoLatent", [1280, 704, 121, 1])
    add_note(editor, STREAMING_NOTE.format(size="1280x704, 121 frames, 24 fps"), [-500, -260])
    return finish(editor.workflow, "wan22_5b_ti2v")


def decode_only() -> dict:
    """LoadLatent -> VAE Decode (Streaming) -> Save Video (Streaming): re-encode or benchmark a saved latent."""
    workflow = {"last_node_id": 0, "last_link_id": 0, "nodes": [], "links": [], "groups": [], "config": {},
                "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}
    editor = Editor(workflow)
    latent = editor.add({"id": 1, "type": "LoadLatent", "pos": [40, 60], "size": [320, 60], "flags": {}, "order": 0,
                         "mode": 0, "inputs": [], "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}],
                         "properties": {"cnr_id": "comfy-core", "Node name for S&R": "LoadLatent"},
                         "widgets_values": ["ComfyUI_00001_.latent"]})
    vae = editor.add({"id": 2, "type": "VAELoader", "pos": [40, 180], "size": [320, 60], "flags": {}, "order": 1,
                      "mode": 0, "inputs": [], "outputs": [{"name": "VAE", "type": "VAE", "links": []}],
                      "properties": {"cnr_id": "comfy-core", "Node name for S&R": "VAELoader",
                                     "models": [{"name": "wan_2.1_vae.safetensors", "directory": "vae",
                                                 "url": VAE_URL + "wan_2.1_vae.safetensors"}]},
                      "widgets_values": ["wan_2.1_vae.safetensors"]})
    stream = editor.add(stream_decode_node(3, [420, 100], 0))
    sink = editor.add(stream_save_node(4, [720, 60], [400, 500], 0, 16, "video/StreamVAE_decode"))
    editor.connect(latent, 0, stream, 0, "LATENT")
    editor.connect(vae, 0, stream, 1, "VAE")
    editor.connect(stream, 0, sink, 0, "FRAME_STREAM")
    add_note(editor, (
        "**Decode only**: a latent saved by Save Latent (it writes output/latents/*.latent) decoded and encoded again, "
        "for re-encoding with other settings or for timing the decode alone.\n\n1. Copy the .latent file into "
        "ComfyUI's input folder (Load Latent lists that folder), or from a script: `python -m streamvae run "
        "example_workflows/decode_only.json --set LoadLatent.latent=@clip.latent` uploads it.\n2. Pick the VAE that made "
        "it: wan_2.1_vae for Wan 2.1 and Wan 2.2 14B (16 fps), wan2.2_vae for Wan 2.2 5B (24 fps)."), [40, 320])
    return finish(workflow, "decode_only")


WORKFLOWS = {"wan22_14b_t2v": wan22_14b_t2v, "wan22_14b_i2v": wan22_14b_i2v, "wan22_5b_ti2v": wan22_5b_ti2v,
             "decode_only": decode_only}


# --------------------------------------------------------------------------- models list


def models_used(workflows: dict[str, dict]) -> list[dict]:
    """Every model file the workflows name (in properties.models, as the page's missing-models dialog reads it)."""
    found: dict[tuple, dict] = {}
    for name, workflow in workflows.items():
        for node in workflow["nodes"]:
            for model in node.get("properties", {}).get("models") or []:
                entry = found.setdefault((model["directory"], model["name"]), {**model, "used_by": []})
                if name not in entry["used_by"]:
                    entry["used_by"].append(name)
    return [found[key] for key in sorted(found)]


def write_models_tsv(models: list[dict], path: Path):
    lines = ["# folder\tfile\turl\tused_by  (written by build_workflows.py; sizes and SHA-256 come from Hugging Face "
             "at download time: deploy/g7e/setup.sh)"]
    lines += [f"{model['directory']}\t{model['name']}\t{model['url']}\t{','.join(model['used_by'])}"
              for model in models]
    path.write_text("\n".join(lines) + "\n")


def write_models_md(models: list[dict], path: Path):
    lines = [
        "# Models the bundled workflows use",
        "",
        "Written by `build_workflows.py` from the official templates' own model links (Comfy-Org's repackaged files on",
        "Hugging Face); `models.tsv` holds the same list for `deploy/g7e/setup.sh`. Put each file in the folder named",
        "here, under ComfyUI's `models/`.",
        "",
        "Sizes and SHA-256 are **not verified here** (this machine can't reach Hugging Face). `deploy/g7e/setup.sh`",
        "reads both from Hugging Face's API (each file's LFS SHA-256) when it downloads, verifies the file, and",
        "refuses a mismatch. By hand: `sha256sum FILE` and compare with the SHA-256 on the file's Hugging Face page.",
        "",
        "| folder | file | used by | source |",
        "|---|---|---|---|",
    ]
    lines += [f"| {model['directory']} | `{model['name']}` | {', '.join(model['used_by'])} | "
              f"[{model['url'].split('/')[4]}]({model['url']}) |" for model in models]
    lines += ["", "The 14B workflows load the high- and low-noise experts and the 4-step LoRAs; the 20-step graph "
              "(bypassed) needs no LoRA. wan_2.1_vae serves Wan 2.1 and Wan 2.2 14B; wan2.2_vae only the 5B.", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="a ComfyUI with this pack loaded, for /object_info")
    args = parser.parse_args()
    object_info = ComfyClient(args.server).object_info()
    built = {name: order_our_widgets(build(), object_info) for name, build in WORKFLOWS.items()}
    (HERE / "api").mkdir(exist_ok=True)
    EXAMPLES.mkdir(exist_ok=True)
    for name, workflow in built.items():
        (EXAMPLES / f"{name}.json").write_text(json.dumps(workflow, indent=1, ensure_ascii=False) + "\n")
        prompt = ui_to_api(workflow, object_info)
        (HERE / "api" / f"{name}.json").write_text(json.dumps(prompt, indent=2, ensure_ascii=False) + "\n")
        print(f"{name}: {len(workflow['nodes'])} nodes in the page, {len(prompt)} queued")
    write_models_tsv(models_used(built), HERE / "models.tsv")
    write_models_md(models_used(built), HERE / "models.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
