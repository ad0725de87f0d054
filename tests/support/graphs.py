"""API-format graphs with this pack's nodes, and where their files land (host and reliability tests).

Sizes are tiny on purpose: the VAEs are full-size random-weight models decoding on 2 CPU cores, where one latent
frame of a 64-pixel video takes a few hundredths of a second to a second, depending on load.
"""

from __future__ import annotations

from pathlib import Path

from support.comfy_server import WAN21_VAE, WAN22_VAE

WIDTH, HEIGHT = 64, 48
FRAMES = 5  # two latent frames: 1 + 4

SAVE_DEFAULTS = {"fps": 16, "filename_prefix": "video/StreamVAE", "container": "mp4", "codec": "h264", "crf": 19,
                 "preset": "ultrafast", "pix_fmt": "auto", "encoder": "auto", "embed_workflow": True}
LOSSLESS = {"container": "mkv", "codec": "ffv1", "pix_fmt": "bgr0"}  # bgr0 keeps the RGB bytes exactly


def latent_nodes(family: str, *, frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT,
                 batch: int = 1) -> dict:
    """Nodes "vae" and "latent": Wan 2.1 (16 channels) or Wan 2.2 (48 channels), as the official templates pair them."""
    size = {"width": width, "height": height, "length": frames, "batch_size": batch}
    if family == "wan21":
        return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": WAN21_VAE}},
                "latent": {"class_type": "EmptyHunyuanLatentVideo", "inputs": size}}
    return {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": WAN22_VAE}},
            "latent": {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["vae", 0], **size}}}


def save_node(source: dict, **settings) -> dict:
    """Save Video (Streaming) fed by `source` ({"frames": link} or {"images": link})."""
    return {"class_type": "StreamVAESaveVideo", "inputs": {**SAVE_DEFAULTS, **settings, **source}}


def streaming_prompt(family: str, *, mode: str = "exact", latent: dict | None = None, **settings) -> dict:
    """latent -> VAE Decode (Streaming) -> Save Video (Streaming) as node "save"."""
    return {
        **latent_nodes(family, **(latent or {})),
        "stream": {"class_type": "StreamVAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0],
                                                               "mode": mode}},
        "save": save_node({"frames": ["stream", 0]}, **settings),
    }


def without_titles(prompt: dict) -> dict:
    """An API prompt less `_meta`: the server ignores it, and the titles of untitled nodes are display names, which
    change between releases (and the page translates)."""
    return {node_id: {key: value for key, value in node.items() if key != "_meta"} for node_id, node in prompt.items()}


def saved_files(run, output_dir: Path, node: str = "save") -> list[Path]:
    """The files a save node reported in /history, as paths in the server's output folder."""
    return [Path(output_dir) / item["subfolder"] / item["filename"] for item in run.outputs[node]["images"]]


def error_message(run) -> str:
    """The exception message of the run's one execution error."""
    errors = run.of_type("execution_error")
    assert len(errors) == 1, f"expected one execution error, got {run.types}"
    return errors[0]["exception_message"]


SUBGRAPH_ID = "3f0c2f0e-5d7b-4c39-9a43-2f7d1c6b8a10"


def subgraph_workflow(instance_values=(), proxies=None, filename_prefix: str = "sub/clip") -> dict:
    """UI format: VAELoader (1) -> subgraph node 10, whose definition holds EmptyHunyuanLatentVideo (3) ->
    VAE Decode (Streaming) (6) -> Save Video (Streaming) (8); execution ids "10:3", "10:6", "10:8".

    The definition's inputs: `vae` (feeds the decode) and `length` (feeds the latent's length widget). The
    instance's widgets_values are `instance_values`; `proxies` becomes its properties.proxyWidgets."""
    def node(node_id, node_type, inputs, outputs, values, x):
        return {"id": node_id, "type": node_type, "pos": [x, 0], "size": [300, 120], "flags": {}, "order": 0,
                "mode": 0, "inputs": inputs, "outputs": outputs, "properties": {}, "widgets_values": values}

    optional = 7  # litegraph's shape for an optional socket
    inner = [
        node(3, "EmptyHunyuanLatentVideo", [{"name": "length", "type": "INT", "widget": {"name": "length"}, "link": 102}],
             [{"name": "LATENT", "type": "LATENT", "links": [103]}], [WIDTH, HEIGHT, FRAMES, 1], 0),
        node(6, "StreamVAEDecode", [{"name": "samples", "type": "LATENT", "link": 103},
                                    {"name": "vae", "type": "VAE", "link": 101}],
             [{"name": "FRAME_STREAM", "type": "FRAME_STREAM", "links": [104]}], ["exact", "auto"], 350),
        node(8, "StreamVAESaveVideo", [{"name": "frames", "type": "FRAME_STREAM", "link": 104, "shape": optional},
                                       {"name": "images", "type": "IMAGE", "link": None, "shape": optional},
                                       {"name": "audio", "type": "AUDIO", "link": None, "shape": optional}],
             [{"name": "video", "type": "VIDEO", "links": []}, {"name": "path", "type": "STRING", "links": []}],
             [16, filename_prefix, "mp4", "h264", 19, "ultrafast", "auto", "auto", True], 700),
    ]
    links = [(101, -10, 0, 6, 1, "VAE"), (102, -10, 1, 3, 0, "INT"), (103, 3, 0, 6, 0, "LATENT"),
             (104, 6, 0, 8, 0, "FRAME_STREAM")]
    definition = {
        "id": SUBGRAPH_ID, "version": 1, "revision": 0, "config": {}, "name": "Decode and save",
        "state": {"lastGroupId": 0, "lastNodeId": 8, "lastLinkId": 104, "lastRerouteId": 0},
        "inputNode": {"id": -10, "bounding": [-200, 0, 120, 80]}, "outputNode": {"id": -20, "bounding": [1100, 0, 120, 60]},
        "inputs": [{"id": "5b0d6c1e-0000-4000-8000-000000000001", "name": "vae", "type": "VAE", "linkIds": [101]},
                   {"id": "5b0d6c1e-0000-4000-8000-000000000002", "name": "length", "type": "INT", "linkIds": [102]}],
        "outputs": [], "widgets": [], "nodes": inner, "groups": [], "extra": {},
        "links": [dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), link))
                  for link in links]}
    instance = node(10, SUBGRAPH_ID, [{"name": "vae", "type": "VAE", "link": 1},
                                      {"name": "length", "type": "INT", "widget": {"name": "length"}, "link": None}],
                    [], list(instance_values), 350)
    if proxies is not None:
        instance["properties"]["proxyWidgets"] = proxies
    loader = node(1, "VAELoader", [], [{"name": "VAE", "type": "VAE", "links": [1]}], [WAN21_VAE], 0)
    return {"id": "6d1e1a5e-8f3b-4b1e-9d55-3f3c1e7a2b01", "revision": 0, "last_node_id": 10, "last_link_id": 1,
            "nodes": [loader, instance], "links": [[1, 1, 0, 10, 0, "VAE"]], "groups": [], "config": {},
            "extra": {}, "version": 0.4, "definitions": {"subgraphs": [definition]}}
