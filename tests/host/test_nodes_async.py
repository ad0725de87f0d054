"""VAE Decode (Async) against stock VAE Decode on the server: the same IMAGE, float for float.

Only HTTP comes back from the server, so the comparison runs there with core nodes: Image Blend in difference mode
with factor 1 computes exactly a - b (clamped at 0), both ways round; Threshold Mask at 0 turns any positive
difference, however small, into a 1; the masks are added up and saved as PNGs, which must be black.
"""

from PIL import Image
import numpy as np

from support.graphs import FRAMES, HEIGHT, WIDTH, latent_nodes

CHANNELS = ("red", "green", "blue")


def difference_mask_nodes(a: str, b: str) -> dict:
    """Nodes ending in "diff_image": 1 wherever IMAGE a and IMAGE b differ in any channel, else 0."""
    nodes, masks = {}, []
    for first, second in ((a, b), (b, a)):
        blend = f"blend_{first}_{second}"
        nodes[blend] = {"class_type": "ImageBlend", "inputs": {"image1": [first, 0], "image2": [second, 0],
                                                              "blend_factor": 1.0, "blend_mode": "difference"}}
        for channel in CHANNELS:
            mask, threshold = f"{blend}_{channel}", f"{blend}_{channel}_nonzero"
            nodes[mask] = {"class_type": "ImageToMask", "inputs": {"image": [blend, 0], "channel": channel}}
            nodes[threshold] = {"class_type": "ThresholdMask", "inputs": {"mask": [mask, 0], "value": 0.0}}
            masks.append(threshold)
    total = masks[0]
    for index, mask in enumerate(masks[1:]):
        nodes[f"sum_{index}"] = {"class_type": "MaskComposite", "inputs": {
            "destination": [total, 0], "source": [mask, 0], "x": 0, "y": 0, "operation": "add"}}
        total = f"sum_{index}"
    nodes["diff_image"] = {"class_type": "MaskToImage", "inputs": {"mask": [total, 0]}}
    return nodes


def test_async_decode_equals_vae_decode(comfy_client, comfy_server):
    prompt = {
        **latent_nodes("wan21"),
        "stock": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}},
        "async": {"class_type": "StreamVAEDecodeAsync", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}},
        **difference_mask_nodes("stock", "async"),
        "save_diff": {"class_type": "SaveImage", "inputs": {"images": ["diff_image", 0],
                                                            "filename_prefix": "async/diff"}},
        "save_async": {"class_type": "SaveImage", "inputs": {"images": ["async", 0], "filename_prefix": "async/img"}},
    }
    run = comfy_client.run_prompt(prompt, timeout=300)
    assert run.status == "success", run.of_type("execution_error")

    output = comfy_server.tree.output
    images = [np.asarray(Image.open(output / item["subfolder"] / item["filename"]))
              for item in run.outputs["save_async"]["images"]]
    assert len(images) == FRAMES and images[0].shape == (HEIGHT, WIDTH, 3)  # Blend would hide a size mismatch
    assert np.stack(images).std() > 10
    diffs = [np.asarray(Image.open(output / item["subfolder"] / item["filename"]))
             for item in run.outputs["save_diff"]["images"]]
    assert len(diffs) == FRAMES
    assert all(not diff.any() for diff in diffs), "VAE Decode (Async) differs from VAE Decode"
    # Progress per chunk: one per latent frame (1 + 4 frames), in frames.
    async_progress = [data for data in run.of_type("progress") if data["node"] == "async"]
    assert [(data["value"], data["max"]) for data in async_progress] == [(1, FRAMES), (FRAMES, FRAMES)]
