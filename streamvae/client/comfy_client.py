"""ComfyClient: one ComfyUI server, reached over HTTP (urllib) and one WebSocket (websocket-client, imported when
a run starts); queue a workflow, follow it to the end, download what it saved.

    client = ComfyClient("http://127.0.0.1:8188")
    result = client.run(json.load(open("example_workflows/wan22_14b_t2v.json")), Overrides(prompt="a red fox", seed=7),
                        out_dir="out")
    result.ok, result.files, result.error

Takes either workflow format: API prompts go to /prompt as they are, UI workflows are converted first
(ui_workflow.py). Needs no torch and no ComfyUI.
"""

from __future__ import annotations

import copy
import json
import mimetypes
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .errors import ClientError, HttpStatusError, PromptRejected, RunTimeout, ServerUnreachable, WorkflowError
from .formats import is_api_format, is_ui_format
from .headers import redact
from .overrides import Overrides, apply_overrides
from .ui_workflow import ui_to_api


@dataclass
class RunResult:
    prompt_id: str
    status: str  # "success", "error" or "interrupted"
    prompt: dict
    outputs: dict = field(default_factory=dict)  # the output nodes' ui dicts, from /history
    files: list[Path] = field(default_factory=list)  # downloaded into out_dir
    error: Optional[dict] = None  # the execution_error event's data

    @property
    def ok(self) -> bool:
        return self.status == "success"


EventCallback = Callable[[dict], None]


class ComfyClient:
    """One ComfyUI server: HTTP for requests, a WebSocket (same client_id) for the events of the prompts it queues.

    headers go on every request and on the WebSocket handshake: for a reverse proxy that wants a token.
    """

    def __init__(self, url: str, *, headers: Optional[dict] = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())
        self._object_info: Optional[dict] = None
        self._ws = None

    # ---- HTTP

    def _open(self, method: str, path: str, data: Optional[bytes] = None, content_type: Optional[str] = None,
              timeout: Optional[float] = None):
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as error:
            answer = redact(error.read().decode(errors="replace"), self.headers).encode()
            raise HttpStatusError(method, path.split("?")[0], error.code, answer) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise ServerUnreachable(
                f"can't reach ComfyUI at {self.url} ({getattr(error, 'reason', error)}). Is it running, and is the "
                "SSH tunnel open (ssh -N -L 8188:127.0.0.1:8188 HOST)?") from None

    def _json(self, method: str, path: str, body: Optional[dict] = None, timeout: Optional[float] = None):
        data = None if body is None else json.dumps(body).encode()
        with self._open(method, path, data, "application/json" if data is not None else None,
                        timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def object_info(self) -> dict:
        if self._object_info is None:
            self._object_info = self._json("GET", "/object_info")
        return self._object_info

    def to_api(self, workflow: dict) -> dict:
        """The API prompt for a workflow in either format."""
        if is_ui_format(workflow):
            return ui_to_api(workflow, self.object_info())
        if is_api_format(workflow):
            return copy.deepcopy(workflow)
        raise WorkflowError("neither a UI-format workflow (nodes, links) nor an API-format prompt "
                            "({id: {class_type, inputs}}): is this a ComfyUI workflow file?")

    def submit(self, prompt: dict, extra_data: Optional[dict] = None) -> str:
        """POST /prompt; the prompt_id, or PromptRejected with the server's reasons.

        The id is a canonical UUID string: newer servers refuse any other spelling (HTTP 400, "prompt_id must be a
        valid UUID"), older ones take it as it is."""
        prompt_id = str(uuid.uuid4())
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id, "extra_data": extra_data or {}}
        try:
            self._json("POST", "/prompt", body)
        except HttpStatusError as error:
            if error.status != 400:
                raise
            raise PromptRejected(json.loads(error.body or b"{}"), prompt) from None
        return prompt_id

    def history(self, prompt_id: str, timeout: Optional[float] = None) -> Optional[dict]:
        return (self._json("GET", "/history/" + prompt_id, timeout=timeout) or {}).get(prompt_id)

    def interrupt(self, prompt_id: str):
        """Stop prompt_id if it is the one running (the server ignores it otherwise)."""
        self._json("POST", "/interrupt", {"prompt_id": prompt_id})

    def cancel(self, prompt_id: str):
        """Take prompt_id out of the queue if it waits there, and interrupt it if it runs."""
        self._json("POST", "/queue", {"delete": [prompt_id]})
        self.interrupt(prompt_id)

    def upload(self, path: Path) -> str:
        """Put a local file into the server's input folder (POST /upload/image takes any file); its name there.

        As the page does, never overwrite: the server keeps an identical file's name and renames a different one."""
        path = Path(path)
        if not path.is_file():
            raise WorkflowError(f"{path}: no such file to upload.")
        boundary = uuid.uuid4().hex
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        with self._open("POST", "/upload/image", head + path.read_bytes() + tail,
                        f"multipart/form-data; boundary={boundary}") as response:
            answer = json.loads(response.read())
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def download(self, item: dict, out_dir: Path) -> Path:
        """GET /view for one output file, into out_dir/subfolder/filename."""
        relative = Path(item.get("subfolder") or "") / item["filename"]
        if relative.is_absolute() or ".." in relative.parts:
            raise ClientError(f"the server named an output outside its folder ({relative}); not downloading it.")
        target = Path(out_dir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                        "type": item.get("type", "output")})
        partial = target.with_name(target.name + ".part")
        with self._open("GET", "/view?" + query) as response, open(partial, "wb") as sink:
            shutil.copyfileobj(response, sink, 1 << 20)
        partial.replace(target)
        return target

    # ---- WebSocket

    def _connect(self):
        try:
            import websocket  # noqa: PLC0415 - websocket-client; only runs need it
        except ImportError:
            raise ClientError("following a run needs websocket-client: pip install websocket-client") from None
        scheme = "wss://" if self.url.startswith("https://") else "ws://"
        ws_url = scheme + self.url.split("://", 1)[1] + "/ws?clientId=" + self.client_id
        try:
            self._ws = websocket.create_connection(ws_url, timeout=self.timeout,
                                                   header=[f"{key}: {value}" for key, value in self.headers.items()])
        except (OSError, websocket.WebSocketException) as error:
            raise ServerUnreachable(f"can't open the WebSocket {ws_url}: {redact(str(error), self.headers)}") from None

    def close(self):
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def _next_event(self, wait: float) -> Optional[dict]:
        """The next JSON event, or None after `wait` seconds of silence; binary previews are skipped."""
        import websocket  # noqa: PLC0415

        self._ws.settimeout(wait)
        try:
            frame = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        return json.loads(frame) if isinstance(frame, str) else {"type": "binary", "data": {}}

    def follow(self, prompt_id: str, *, timeout: Optional[float] = None,
               on_event: Optional[EventCallback] = None, reconnect_for: float = 60.0) -> dict:
        """Wait for prompt_id to finish; its /history entry. Survives dropped WebSockets (reconnects and asks
        /history what it missed); RunTimeout after `timeout` seconds."""
        import websocket  # noqa: PLC0415

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RunTimeout(f"prompt {prompt_id} did not finish within {timeout:.0f} s.")
            try:
                event = self._next_event(min(5.0, remaining) if remaining is not None else 5.0)
            except (OSError, websocket.WebSocketException):
                self._reconnect(reconnect_for)
                event = None
            if event is None:  # quiet (or just reconnected): the end may have come while we were not listening
                try:  # a server too busy to answer must not hold us past the deadline
                    entry = self.history(prompt_id, timeout=None if remaining is None else max(0.5, remaining))
                except ServerUnreachable:
                    if deadline is None:
                        raise
                    continue
                if entry is not None and entry.get("status", {}).get("completed") is not None:
                    return entry
                continue
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if on_event:
                on_event(event)
            if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return self.history(prompt_id) or {}

    def _reconnect(self, within: float):
        deadline = time.monotonic() + within
        delay = 0.5
        while True:
            self.close()
            try:
                self._connect()
                return
            except ServerUnreachable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ---- the whole job

    def prepare(self, workflow: dict, overrides: Optional[Overrides] = None) -> dict:
        """API prompt with overrides applied; `@path` values in --set are uploaded first."""
        overrides = overrides or Overrides()
        sets = [(node, name, self.upload(Path(value[1:])) if isinstance(value, str) and value.startswith("@")
                 else value) for node, name, value in overrides.sets]
        object_info = self.object_info() if (is_ui_format(workflow) or sets) else None
        return apply_overrides(self.to_api(workflow), Overrides(**{**overrides.__dict__, "sets": sets}), object_info)

    def run(self, workflow: dict, overrides: Optional[Overrides] = None, *, out_dir: Optional[Path] = None,
            timeout: Optional[float] = None, on_event: Optional[EventCallback] = None) -> RunResult:
        """prepare + execute: queue the workflow, follow it to the end, download its files into out_dir."""
        return self.execute(self.prepare(workflow, overrides), workflow_extra(workflow), out_dir=out_dir,
                            timeout=timeout, on_event=on_event)

    def execute(self, prompt: dict, extra_data: Optional[dict] = None, *, out_dir: Optional[Path] = None,
                timeout: Optional[float] = None, on_event: Optional[EventCallback] = None,
                reconnect_for: float = 60.0) -> RunResult:
        """Queue an API prompt, follow it to the end, download its output files into out_dir (when given).

        Timeout, Ctrl-C or a lost server while following cancel the prompt on the server before re-raising.
        reconnect_for: how long a dropped WebSocket is retried before ServerUnreachable (a remote server may be
        restarting; a caller that owns the server and sees it exit has no reason to wait).
        """
        self._connect()  # before queueing: the server sends a prompt's events only to a connected client
        try:
            prompt_id = self.submit(prompt, extra_data)
            try:
                entry = self.follow(prompt_id, timeout=timeout, on_event=on_event, reconnect_for=reconnect_for)
            except BaseException:
                self._cancel_quietly(prompt_id)
                raise
        finally:
            self.close()
        result = _result_from_history(prompt_id, prompt, entry)
        if out_dir is not None and result.ok:
            result.files = [self.download(item, Path(out_dir)) for item in output_files(result.outputs)]
        return result

    def validate(self, workflow: dict, overrides: Optional[Overrides] = None) -> dict:
        """Have the server validate the prompt, then withdraw it; the API prompt, or PromptRejected.

        /prompt validates before it queues, so a 200 means valid; the prompt is then taken out of the queue (or
        interrupted, if the worker picked it up already) until it is gone.
        """
        prompt = self.prepare(workflow, overrides)
        prompt_id = self.submit(prompt)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.cancel(prompt_id)
            queue = self._json("GET", "/queue")
            queued = {item[1] for item in queue.get("queue_running", []) + queue.get("queue_pending", [])}
            if prompt_id not in queued:
                return prompt
            time.sleep(0.2)
        raise ClientError(f"validated, but prompt {prompt_id} would not leave the queue; cancel it in the page.")

    def _cancel_quietly(self, prompt_id: str):
        try:
            self.cancel(prompt_id)
        except ClientError:
            pass


def workflow_extra(workflow: dict) -> dict:
    """extra_data for /prompt: a UI-format workflow travels along as the page sends it, so save nodes embed it."""
    return {"extra_pnginfo": {"workflow": workflow}} if is_ui_format(workflow) else {}


def _result_from_history(prompt_id: str, prompt: dict, entry: dict) -> RunResult:
    messages = entry.get("status", {}).get("messages", [])
    events = {name: data for name, data in messages}
    if "execution_error" in events:
        status = "error"
    elif "execution_interrupted" in events:
        status = "interrupted"
    else:
        status = "success" if entry.get("status", {}).get("status_str") == "success" else "error"
    return RunResult(prompt_id, status, prompt, entry.get("outputs", {}), error=events.get("execution_error"))


def output_files(outputs: dict) -> list[dict]:
    """Every saved file the output nodes reported ({filename, subfolder, type: output}); previews (temp) skipped."""
    files = []
    for ui in outputs.values():
        for items in ui.values():
            if isinstance(items, list):
                files += [item for item in items
                          if isinstance(item, dict) and "filename" in item and item.get("type", "output") == "output"]
    return files
