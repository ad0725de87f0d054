"""The Triton kernels' tests (test_triton_kernels.py) on the CPU, through Triton's interpreter, so that a machine
without a GPU (CI) checks the kernels' arithmetic too. The interpreter must be switched on before Triton is first
imported, hence a Python process of its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamvae.kernels import HAVE_TRITON

KERNEL_TESTS = Path(__file__).with_name("test_triton_kernels.py")


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton (installed with PyTorch's Linux builds)")
def test_triton_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}  # the CPU even where a GPU is
    # From the repository root, so that `python -m pytest` imports this checkout's package, whatever is installed.
    result = subprocess.run([sys.executable, "-m", "pytest", str(KERNEL_TESTS), "-q", "-p", "no:cacheprovider"],
                            cwd=KERNEL_TESTS.parents[2], env=env, capture_output=True, text=True, timeout=300)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
