"""Counts of repeated runs, cancel checks, and what a process holds or leaves running (the reliability tests).

Sizes are tiny on purpose (2 shared CPU cores in CI); counts of repeated runs come from environment variables so a
bigger machine can run the full numbers:

    STREAMVAE_LOAD_PROMPTS   prompts in the load test (full: 50; default here 4, after a 4-prompt warm-up)
    STREAMVAE_CANCEL_RUNS    interrupted prompts in the server's cancel storm (full: 30; default here 4)
    STREAMVAE_ENGINE_CANCELS cancels in the engine-level storm (default 8)
    STREAMVAE_PROPERTY_EXAMPLES  hypothesis examples per property (default 60)
"""

from __future__ import annotations

import os
import threading
import time


def count_from_env(name: str, default: int) -> int:
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ValueError(f"{name}={value}: use a positive count")
    return value


class CancelAfter:
    """A cancel check for the engine that answers True from its (allowed + 1)-th poll on; `polls` counts them."""

    def __init__(self, allowed: int):
        self.allowed, self.polls = allowed, 0

    def __call__(self) -> bool:
        self.polls += 1
        return self.polls > self.allowed


def engine_threads(timeout: float = 5.0) -> list[str]:
    """Names of the engine's threads still alive after giving them `timeout` seconds to finish."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("streamvae-"):
            thread.join(max(0.0, deadline - time.monotonic()))
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("streamvae-") and
            thread.is_alive()]


def snapshot(pid: int) -> dict:
    """What a process holds: resident memory, threads, open file descriptors, and the files among them."""
    import psutil

    process = psutil.Process(pid)
    return {"rss": process.memory_info().rss, "threads": process.num_threads(), "fds": process.num_fds(),
            "files": sorted(item.path for item in process.open_files())}
