"""What `python -m streamvae run` shows while a prompt runs: a line per node and a tqdm bar for its steps."""

from __future__ import annotations

import sys

from .error_text import node_label


class ProgressPrinter:
    """A tqdm bar per running node, fed by the prompt's WebSocket events."""

    def __init__(self, prompt: dict, stream=None):
        self.prompt = prompt
        self.stream = stream or sys.stderr
        self.bar = None
        self.done = 0

    def __call__(self, event: dict):
        kind, data = event["type"], event.get("data") or {}
        if kind == "execution_cached":
            self.done += len(data.get("nodes") or [])
        elif kind == "executing" and data.get("node") is not None:
            self._close_bar()
            self.done += 1
            print(f"[{self.done}/{len(self.prompt)}] {node_label(self.prompt, data['node'])}", file=self.stream)
        elif kind == "progress":
            self._update(data)

    def _update(self, data: dict):
        from tqdm import tqdm  # noqa: PLC0415

        if self.bar is None or self.bar.total != data["max"]:
            self._close_bar()
            self.bar = tqdm(total=data["max"], file=self.stream, leave=False, unit="step")
        self.bar.update(data["value"] - self.bar.n)

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self):
        self._close_bar()
