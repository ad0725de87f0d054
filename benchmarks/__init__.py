"""Benchmarks of ComfyUI-StreamVAE, run from the repository root (`python -m benchmarks`, `python -m
benchmarks.NAME`); not part of the installed package.

    __main__.py   the benchmark command: stock-like vs streaming, one case or the full suite
    bench.py      one case: the stock-like path and the streaming paths on the same latent, timed in one process
    suite.py      every case with the decode-only competitors (diffusers eager, fastvae), and the chart
    synthetic.py  random-weight Wan VAEs of the real architectures, and realistic frames for the encoder
    fidelity.py   PSNR of 8-bit frames (the tests use it too)
    results.py    benchmarks/results.jsonl: append a run's rows, read them, render the README's table
    *_gpu.py, *_cpu.py  studies of one question each (kernels, encoder tail, FP8); each says how to run it
    profiles/     torch-profiler tables of fast mode, as docs/benchmarks.md cites them
"""
