"""Helpers shared by every test folder, imported as `support.<module>` (tests/pytest.ini puts tests/ on the path;
scripts run by hand put it there themselves). Plain functions and classes, no fixtures: the conftest.py files turn
them into fixtures.

    videos.py               read a video back (PyAV), PSNR, smooth test content, leftover `.partial` files
    tiny_vaes.py            tiny configurations of the real Wan VAE classes, latents for them, stock ComfyUI's bytes
    comfy_server.py         a real ComfyUI server (`main.py --cpu`) with this pack and random-weight Wan VAEs
    host_client.py          HostClient: the headless client (streamvae.client) plus what tests need to watch a run
    graphs.py               API-format graphs with this pack's nodes, and where their files land
    process_checks.py       counts from the environment, engine threads left, what a process holds, cancel checks
    make_random_wan_vaes.py the script comfy_server.py runs to write the random-weight VAE files
    farm_jobs.py            the farm's tests and benchmark: decode-only jobs, a worker's ComfyUI arguments, the
                            release the farm tests run on, and the check that every output is there once
"""
