"""HostClient: the headless client users run (streamvae.client.ComfyClient), plus what tests need to watch a
prompt message by message on a real server (support/comfy_server.py starts one).

    client = HostClient(server.url)
    run = client.run_prompt(streaming_prompt("wan21"), timeout=300)     # queue + wait
    run.status, run.types, run.of_type("progress"), run.outputs

    prompt_id = client.queue(prompt)                                    # act mid-run:
    update = client.wait_for_progress(prompt_id, "save", timeout=300)   # ... until the save node reports progress
    client.interrupt(prompt_id)
    run = client.wait(prompt_id)                                        # still every message of the run
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass

from streamvae.client import ComfyClient

END_OF_RUN = ("execution_error", "execution_success", "execution_interrupted")


@dataclass
class PromptRun:
    """What happened to one prompt: its WebSocket messages in order, and its /history entry."""

    prompt_id: str
    messages: list[dict]  # {"type": str, "data": dict}; binary frames as {"type": "binary", "event": int, "data": bytes}
    history: dict

    @property
    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]

    @property
    def status(self) -> str:
        return self.history.get("status", {}).get("status_str", "")

    @property
    def outputs(self) -> dict:
        """The `ui` dicts of the output nodes, by node id (as stored in /history)."""
        return self.history.get("outputs", {})

    def of_type(self, message_type: str) -> list[dict]:
        return [message["data"] for message in self.messages if message["type"] == message_type]


class HostClient(ComfyClient):
    """One client_id, one WebSocket open from construction to close(): ComfyUI sends a prompt's events only to the
    client_id that queued it, and only while that socket is connected.

    Messages read while following one prompt that belong to another are *held* for that prompt: wait() hands them
    over first. A test that reads events itself (events()) puts back what it doesn't consume with hold(), and takes
    a prompt's held messages with take_held().
    """

    def __init__(self, url: str, timeout: float = 30):
        super().__init__(url, timeout=timeout)
        self._held: dict[str, list[dict]] = {}
        self._connect()

    # ---- HTTP, as a test asks

    def get_json(self, path: str):
        return self._json("GET", path)

    def object_info(self, node_class: str | None = None) -> dict:
        """All node definitions, or one node's definition (its inputs, outputs, combo values)."""
        if node_class is None:
            return super().object_info()
        return self.get_json("/object_info/" + urllib.parse.quote(node_class))[node_class]

    def queue(self, prompt: dict) -> str:
        """POST an API-format prompt; its prompt_id, or streamvae.client.PromptRejected when validation refuses it."""
        return self.submit(prompt)

    def interrupt(self, prompt_id: str | None = None):
        """Stop the running prompt (only if it is prompt_id, when given)."""
        self._json("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Download a file the way the frontend does (GET /view)."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        with self._open("GET", "/view?" + query) as response:
            return response.read()

    # ---- held messages

    def hold(self, message: dict):
        """Keep a message read by hand for the prompt it belongs to; wait() will see it. Messages of no prompt (the
        queue's `status` ...) are dropped, as wait() drops them."""
        data = message.get("data")
        owner = data.get("prompt_id") if isinstance(data, dict) else None
        if owner is not None:
            self._held.setdefault(owner, []).append(message)

    def take_held(self, prompt_id: str) -> list[dict]:
        """The messages held for prompt_id, in arrival order; they are no longer held."""
        return self._held.pop(prompt_id, [])

    def held_prompt_ids(self) -> set[str]:
        """The prompts that have messages held."""
        return set(self._held)

    # ---- the WebSocket

    def events(self, timeout: float):
        """Every JSON event the WebSocket delivers, in the server's order (binary previews skipped), for up to
        `timeout` seconds, then stops. For tests that act mid-run; wait() follows a whole prompt."""
        import websocket  # noqa: PLC0415 - websocket-client, as the library imports it

        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self._ws.settimeout(remaining)
            try:
                frame = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                return
            if not isinstance(frame, bytes):
                yield json.loads(frame)

    def wait_for_progress(self, prompt_id: str, node: str, timeout: float, at_least: int = 0) -> dict | None:
        """Read events until `node` of prompt_id reports progress with value >= at_least: that update, or None if
        the prompt ended first. Every message of the prompt read here is held, so wait() still sees the whole run.
        AssertionError if neither happens within `timeout` seconds."""
        for message in self.events(timeout):
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            self.hold(message)
            if message["type"] == "progress" and data.get("node") == node and data.get("value", 0) >= at_least:
                return data
            if message["type"] in END_OF_RUN:
                return None
        raise AssertionError(f"no progress from node {node} within {timeout:.0f} s")

    def wait(self, prompt_id: str, timeout: float = 120, on_message=None) -> PromptRun:
        """Follow the prompt's events until it finishes (any way), then fetch its history.

        The end is ComfyUI's `executing` with node None: the prompt worker sends it after success, error and
        interrupt alike, and after the history entry is written. on_message(message), when given, sees each of the
        prompt's messages as it arrives (to interrupt at a chosen moment, say).
        """
        import websocket  # noqa: PLC0415

        messages = self.take_held(prompt_id)
        if on_message:
            for message in messages:
                on_message(message)
        finished = any(is_end_of_run(message) for message in messages)
        deadline = time.monotonic() + timeout
        while not finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s; "
                                   f"messages so far: {[message['type'] for message in messages]}")
            self._ws.settimeout(remaining)
            try:
                frame = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(frame, bytes):
                # Previews carry no prompt_id; only one prompt runs at a time, so they are this one's.
                message = {"type": "binary", "event": int.from_bytes(frame[:4], "big"), "data": frame[4:]}
                owner = prompt_id
            else:
                message = json.loads(frame)
                data = message.get("data")
                owner = data.get("prompt_id") if isinstance(data, dict) else None
            if owner != prompt_id:
                self.hold(message)
                continue
            messages.append(message)
            finished = is_end_of_run(message)
            if on_message:
                on_message(message)
        return PromptRun(prompt_id, messages, self.history(prompt_id) or {})

    def run_prompt(self, prompt: dict, timeout: float = 120, on_message=None) -> PromptRun:
        """queue + wait, for an API-format prompt (the library's run() takes a workflow and downloads files)."""
        return self.wait(self.queue(prompt), timeout, on_message)


def is_end_of_run(message: dict) -> bool:
    """`executing` with node None: the last message of a prompt (the caller checked whose)."""
    return message["type"] == "executing" and message["data"].get("node") is None


def client_for(server) -> HostClient:
    """A HostClient on a support.comfy_server.ComfyServer, after checking the server still runs: one that died in
    an earlier test fails every later one, and its log says why."""
    if server.process.poll() is not None:
        raise RuntimeError(f"the ComfyUI server died earlier (exit {server.process.returncode}).\n"
                           + server.log_tail())
    return HostClient(server.url)
