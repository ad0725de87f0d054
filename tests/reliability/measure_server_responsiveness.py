"""How responsive ComfyUI's HTTP server stays while a video decodes: GET /queue every 50 ms during a streaming
decode (VAE Decode (Streaming) -> Save Video (Streaming)) and during stock VAE Decode -> Create Video -> Save Video.

A measurement, not a test (pytest does not collect it): the node runs on ComfyUI's executing thread while the
server's asyncio loop answers HTTP and WebSocket traffic on another, so a node that held the GIL for long would show
here as slow answers and late progress. Run: `.venv/bin/python tests/reliability/measure_server_responsiveness.py`
(needs ComfyUI, as the host tests do). Results: docs/reliability.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# tests/ (for `support`) and the repository root, as tests/pytest.ini puts them.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]
from streamvae.files import find_comfyui  # noqa: E402
from support import comfy_server as host  # noqa: E402
from support.graphs import latent_nodes, streaming_prompt  # noqa: E402
from support.host_client import HostClient  # noqa: E402

PROBE_INTERVAL = 0.05


def stock_prompt(frames: int) -> dict:
    return {**latent_nodes("wan21", frames=frames),
            "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["latent", 0], "vae": ["vae", 0]}},
            "video": {"class_type": "CreateVideo", "inputs": {"images": ["decode", 0], "fps": 16}},
            "save": {"class_type": "SaveVideo", "inputs": {"video": ["video", 0], "filename_prefix": "probe/stock",
                                                           "format": "mp4", "codec": "h264"}}}


def probe_while_running(server, client, prompt: dict) -> tuple[float, list[float]]:
    """Seconds the prompt ran, and the latency of every GET /queue answered meanwhile."""
    prompt_id = client.queue(prompt)
    started, latencies, finished = time.monotonic(), [], threading.Event()
    waiter = threading.Thread(target=lambda: (client.wait(prompt_id, timeout=900), finished.set()))
    waiter.start()
    while not finished.is_set():
        asked = time.monotonic()
        urllib.request.urlopen(server.url + "/queue", timeout=60).read()
        latencies.append(time.monotonic() - asked)
        time.sleep(PROBE_INTERVAL)
    waiter.join()
    return time.monotonic() - started, sorted(latencies)


def main() -> None:
    comfyui = find_comfyui()
    if comfyui is None:
        sys.exit(host.comfyui_missing_reason())
    tree = host.make_host_tree(Path(tempfile.mkdtemp()), comfyui)
    host.build_random_vaes(comfyui, tree.vae)
    server = host.ComfyServer(comfyui, tree).start()
    client = HostClient(server.url)
    try:
        client.run_prompt(streaming_prompt("wan21", filename_prefix="probe/warm"), timeout=300)  # VAE loaded, codecs open
        for name, prompt in (("streaming, 401 frames", streaming_prompt("wan21", filename_prefix="probe/streaming",
                                                                         latent={"frames": 401})),
                             ("stock, 97 frames", stock_prompt(97))):
            seconds, latencies = probe_while_running(server, client, prompt)
            print(f"{name}: ran {seconds:.1f} s, {len(latencies)} probes, median "
                  f"{statistics.median(latencies) * 1000:.0f} ms, p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} "
                  f"ms, max {latencies[-1] * 1000:.0f} ms")
    finally:
        client.close()
        server.stop()
        host.remove_model_files(tree)


if __name__ == "__main__":
    main()
