"""Headless ComfyUI client: queue a workflow on a (remote) ComfyUI, follow it, download what it saved.

    client = ComfyClient("http://127.0.0.1:8188")
    result = client.run(json.load(open("workflows/wan22_14b_t2v.json")), Overrides(prompt="a red fox", seed=7),
                        out_dir="out")
    result.ok, result.files, result.error

Takes either workflow format. API format (`{id: {"class_type", "inputs"}}`) goes to /prompt as it is. UI format (what
the page saves, `{"nodes", "links", ...}`) is converted first, as the frontend's graphToPrompt does when you press
Queue, using the server's /object_info to map each node's `widgets_values` to its input names.

The client itself needs no torch and no ComfyUI (the package's __init__ still imports the engine, so installing the
package brings torch): plain HTTP (urllib) and one WebSocket (websocket-client, imported when a run starts).
Subgraphs are flattened; legacy group nodes are refused with the way out (the page's Export (API)).
"""

from __future__ import annotations

import copy
import json
import mimetypes
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Anything that stops a run before or around the server's work; the message names the problem and the fix."""

    exit_code = 1


class WorkflowError(ClientError):
    """The workflow file or an override can't be turned into a prompt."""

    exit_code = 2


class ServerUnreachable(ClientError):
    exit_code = 3


class HttpStatusError(ClientError):
    """The server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: bytes):
        self.status, self.body = status, body
        hint = " Pass the proxy's credentials with --token or --header." if status in (401, 403) else ""
        super().__init__(f"{method} {path} answered {status}: {body[:300].decode(errors='replace')}{hint}")


class PromptRejected(ClientError):
    """POST /prompt answered 400: the server's validation refused the prompt; nothing ran."""

    def __init__(self, body: dict, prompt: dict):
        self.body = body
        self.error = body.get("error") if isinstance(body.get("error"), dict) else {"message": str(body.get("error"))}
        self.node_errors = body.get("node_errors") or {}
        super().__init__(describe_rejection(body, prompt))


class RunTimeout(ClientError):
    exit_code = 124


# --------------------------------------------------------------------------- UI format -> API format

# Frontend-only node types: they never reach the server (litegraph's isVirtualNode).
VIRTUAL_NODE_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4  # litegraph's LGraphEventMode NEVER and BYPASS
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# `image_upload: true` and friends add an "upload" button whose value ("image", ...) is saved after the combo.
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def is_api_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and bool(workflow) and all(
        isinstance(node, dict) and "class_type" in node for node in workflow.values())


@dataclass
class _Widget:
    name: str
    has_seed_control: bool
    has_upload_button: bool
    default: Any  # what the page shows for a widget the file has no value for (a node that gained a widget)


def widget_inputs(node_info: dict) -> list[_Widget]:
    """The inputs of a node definition that the frontend shows as widgets, in widget order."""
    order = node_info.get("input_order") or {group: list(specs) for group, specs in node_info.get("input", {}).items()}
    widgets = []
    for group in ("required", "optional"):
        specs = node_info.get("input", {}).get(group, {})
        for name in order.get(group, []):
            widget = _widget(name, specs[name]) if specs.get(name) else None
            if widget:
                widgets.append(widget)
    return widgets


def _widget(name: str, spec: list) -> Optional[_Widget]:
    """A widget for an INT/FLOAT/STRING/BOOLEAN/COMBO input not forced to be a socket, else None. The frontend adds a
    seed-control combo after INT widgets flagged `control_after_generate`, or, unflagged, named seed/noise_seed."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if not (isinstance(kind, list) or kind in WIDGET_TYPES) or options.get("forceInput"):
        return None
    control = options.get("control_after_generate")
    if control is None:
        control = kind == "INT" and name in ("seed", "noise_seed")
    choices = kind if isinstance(kind, list) else options.get("options") or [None]
    default = options.get("default", choices[0] if choices else None)
    return _Widget(name, bool(control), any(options.get(option) for option in UPLOAD_OPTIONS), default)


def _api_value(value):
    # A list would read as a link [node_id, slot]; the frontend wraps list values and the server unwraps them.
    return {"__value__": value} if isinstance(value, list) else value


def widget_values_by_name(node: dict, node_info: dict) -> dict:
    """widgets_values (a list in widget order, or a dict keyed by name from some packs) as {input name: value}.

    A widget the file has no value for (saved before the node gained it) gets its default, as on the page."""
    values = node.get("widgets_values")
    widgets = widget_inputs(node_info)
    if isinstance(values, dict):
        saved = {widget.name: values[widget.name] for widget in widgets if widget.name in values}
    else:
        saved = _positional_values(widgets, list(values or []))
    return {widget.name: _api_value(saved.get(widget.name, widget.default)) for widget in widgets
            if widget.name in saved or widget.default is not None}


def _positional_values(widgets: list[_Widget], values: list) -> dict:
    named, index = {}, 0
    for widget in widgets:
        if index >= len(values):
            break
        named[widget.name] = values[index]
        # The page assigns widgets_values by position, its extra widgets included, whatever the values are.
        index += 1 + widget.has_seed_control + widget.has_upload_button
    return named


def _types_match(a, b) -> bool:
    """litegraph's isValidConnection: '*' or '' match anything, 'A,B' lists match on any common type."""
    a, b = str(a or "").lower(), str(b or "").lower()
    if a in ("*", "") or b in ("*", ""):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE = "-10", "-20"  # the ids of a subgraph's input and output nodes


def _link_table(links) -> dict:
    """{link id: (origin id, origin slot)}; links are lists in the root graph and dicts in subgraph definitions."""
    table = {}
    for link in links or []:
        if isinstance(link, dict):
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"]]
        table[link[0]] = (str(link[1]), int(link[2]), str(link[3]), int(link[4]))
    return table


class _Scope:
    """One level of a UI-format workflow, read the way litegraph resolves links when it queues
    (ExecutableNodeDTO): the root graph, or one subgraph instance's copy of its definition.

    Nodes inside a subgraph instance get execution ids "instance:node" (nested: "outer:inner:node")."""

    def __init__(self, graph: dict, definitions: dict, path: tuple = (), instance: Optional[dict] = None,
                 parent: Optional["_Scope"] = None):
        self.nodes = {str(node["id"]): node for node in graph.get("nodes") or []}
        self.links = _link_table(graph.get("links"))
        self.definitions, self.path, self.instance, self.parent = definitions, path, instance, parent

    def execution_id(self, node: dict) -> str:
        return ":".join((*self.path, str(node["id"])))

    def inside(self, instance: dict) -> "_Scope":
        return _Scope(self.definitions[instance["type"]], self.definitions, (*self.path, str(instance["id"])),
                      instance, self)

    def executable_nodes(self):
        """(scope, node) for every node that reaches the server, subgraph instances expanded."""
        for node in self.nodes.values():
            if node["type"] in self.definitions:
                yield from self.inside(node).executable_nodes()
            elif node.get("mode", 0) not in (MODE_MUTED, MODE_BYPASSED) and node["type"] not in VIRTUAL_NODE_TYPES:
                yield self, node

    def resolve_input(self, node: dict, slot: int, want_type=None, seen=None):
        """What feeds input `slot` of node: (execution id, output slot), ("value", v) for a PrimitiveNode's or a
        subgraph widget's value, or None."""
        seen = set() if seen is None else seen
        key = (self.path, str(node["id"]), "in", slot)
        if key in seen:
            raise WorkflowError(f"node {self.execution_id(node)} input {slot}: the links loop back on themselves.")
        seen.add(key)
        inputs = node.get("inputs") or []
        if slot >= len(inputs) or inputs[slot].get("link") is None:
            return None
        link = self.links.get(inputs[slot]["link"])
        if link is None:
            return None  # a dangling link: the frontend drops it too
        origin_id, origin_slot = link[0], link[1]
        if origin_id == SUBGRAPH_INPUT_NODE and self.instance is not None:
            return self._from_instance_input(origin_slot, seen)
        if origin_id not in self.nodes:
            return None
        return self.resolve_output(self.nodes[origin_id], origin_slot, want_type or inputs[slot].get("type"), seen)

    def _from_instance_input(self, slot: int, seen):
        """A link from the subgraph's input node: what feeds the instance's input outside, else its widget value.

        The definition's inputs are the truth (the page rebuilds an instance's sockets from them on load); the
        instance's saved sockets are matched to them by name."""
        definition_inputs = self.definitions[self.instance["type"]].get("inputs") or []
        if slot >= len(definition_inputs):
            return None
        name = definition_inputs[slot].get("name")
        instance_inputs = self.instance.get("inputs") or []
        index = next((i for i, item in enumerate(instance_inputs) if item.get("name") == name), None)
        if index is None:
            return None
        if instance_inputs[index].get("link") is not None:
            return self.parent.resolve_input(self.instance, index, None, seen)
        if not instance_inputs[index].get("widget"):
            return None
        widget_inputs = [item for item in instance_inputs if item.get("widget")]
        values = self.instance.get("widgets_values") or []
        position = widget_inputs.index(instance_inputs[index])
        return ("value", values[position]) if position < len(values) else None

    def resolve_output(self, node: dict, slot: int, want_type, seen):
        if node.get("mode") == MODE_BYPASSED:
            # A bypassed node passes through the input that matches the wanted type.
            index = _bypass_input(node, slot, want_type)
            return None if index < 0 else self.resolve_input(node, index, None, seen)
        if node["type"] in self.definitions:
            inner = self.inside(node)
            feeding = [link for link in inner.links.values()
                       if link[2] == SUBGRAPH_OUTPUT_NODE and link[3] == slot and link[0] in inner.nodes]
            if not feeding:
                return None
            return inner.resolve_output(inner.nodes[feeding[0][0]], feeding[0][1], want_type, seen)
        if node["type"] == "PrimitiveNode":
            return ("value", (node.get("widgets_values") or [None])[0])
        if node["type"] in VIRTUAL_NODE_TYPES:  # Reroute: input i passes to output i
            return self.resolve_input(node, slot, want_type, seen)
        return (self.execution_id(node), slot)


def _bypass_input(node: dict, slot: int, want_type) -> int:
    """The input a bypassed node passes to output `slot`: the same index if its type fits, else the first input of
    exactly the wanted type, else the first that fits; -1 when none does."""
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    if str(want_type or "") in ("*", ""):
        return slot if len(inputs) > slot else 0
    output_type = outputs[slot].get("type") if slot < len(outputs) else want_type
    if slot < len(inputs) and _types_match(inputs[slot].get("type"), output_type) \
            and _types_match(inputs[slot].get("type"), want_type):
        return slot
    for index, item in enumerate(inputs):
        if item.get("type") == want_type:
            return index
    for index, item in enumerate(inputs):
        if _types_match(item.get("type"), output_type) and _types_match(item.get("type"), want_type):
            return index
    return -1


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API prompt the frontend would queue (graphToPrompt).

    Notes and other frontend-only nodes are dropped; muted (mode 2) and bypassed (mode 4) nodes are left out, links
    through bypassed nodes and reroutes go to the node behind them, PrimitiveNode values become literal inputs,
    subgraphs are flattened into "instance:node" ids, and inputs linked to a left-out node are removed.
    """
    if not is_ui_format(workflow):
        raise WorkflowError("not a UI-format workflow (no 'nodes' and 'links'); API-format prompts need no conversion.")
    _refuse_group_nodes(workflow)
    definitions = {item["id"]: item for item in (workflow.get("definitions") or {}).get("subgraphs") or []}
    executable = list(_Scope(workflow, definitions).executable_nodes())
    missing = sorted({node["type"] for _, node in executable if node["type"] not in object_info})
    if missing:
        raise WorkflowError(
            "the server has no node type " + ", ".join(repr(name) for name in missing) + ". Install the custom node "
            "packs that provide them on the server (ComfyUI-Manager: Install Missing Custom Nodes) and restart it.")

    prompt = {}
    for scope, node in sorted(executable, key=lambda item: _id_sort_key(item[0].execution_id(item[1]))):
        info = object_info[node["type"]]
        inputs = widget_values_by_name(node, info)
        for slot, item in enumerate(node.get("inputs") or []):
            resolved = scope.resolve_input(node, slot)
            if resolved is None:
                continue
            inputs[item["name"]] = _api_value(resolved[1]) if resolved[0] == "value" else [resolved[0], resolved[1]]
        title = node.get("title") or info.get("display_name") or node["type"]
        prompt[scope.execution_id(node)] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}

    for node in prompt.values():  # links to muted nodes (or to nothing) go, as in graphToPrompt
        for name, value in list(node["inputs"].items()):
            if _is_link(value) and value[0] not in prompt:
                del node["inputs"][name]
    return prompt


def _refuse_group_nodes(workflow: dict):
    legacy = sorted({node["type"] for node in workflow["nodes"] if str(node["type"]).startswith("workflow>")})
    if legacy:
        raise WorkflowError(
            f"this workflow uses legacy group nodes ({', '.join(legacy)}), which this client does not expand. Open "
            "it in the ComfyUI page (which converts them) and use Workflow > Export (API), then run that file.")


def _id_sort_key(node_id: str):
    """Numeric order for ids like "12" and "12:5" (subgraph paths); anything else after them, by name."""
    parts = node_id.split(":")
    return (0, tuple(map(int, parts)), "") if all(part.isdigit() for part in parts) else (1, (), node_id)


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


# --------------------------------------------------------------------------- overrides


@dataclass
class Overrides:
    """What to change in the prompt before queueing it. `sets` holds (node, input, value); node is an id, a title
    or a node type, and a title or type may match several nodes (all change)."""

    prompt: Optional[str] = None
    negative: Optional[str] = None
    seed: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    length: Optional[int] = None
    fps: Optional[float] = None
    sets: list[tuple[str, str, Any]] = field(default_factory=list)


SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced", "CFGGuider"}


def apply_overrides(prompt: dict, overrides: Overrides, object_info: Optional[dict] = None) -> dict:
    """A copy of the API prompt with the overrides applied; WorkflowError when one matches nothing."""
    prompt = copy.deepcopy(prompt)
    for role, text in (("positive", overrides.prompt), ("negative", overrides.negative)):
        if text is not None:
            targets = _text_encoders(prompt, role)
            if not targets:
                raise WorkflowError(f"--{'prompt' if role == 'positive' else 'negative'}: no text encoder feeds a "
                                    f"sampler's {role} input here; use --set NODE.text=... instead.")
            for node_id in targets:
                prompt[node_id]["inputs"]["text"] = text
    by_input = [("--seed", ("seed", "noise_seed"), overrides.seed), ("--width", ("width",), overrides.width),
                ("--height", ("height",), overrides.height), ("--length", ("length",), overrides.length),
                ("--fps", ("fps", "frame_rate"), overrides.fps)]
    for option, names, value in by_input:
        if value is not None:
            _set_literal_inputs(prompt, option, names, value)
    for node_ref, input_name, value in overrides.sets:
        for node_id in find_nodes(prompt, node_ref):
            node = prompt[node_id]
            known = set(node["inputs"]) | _declared_inputs(object_info, node["class_type"])
            if input_name not in known:
                raise WorkflowError(f"--set {node_ref}.{input_name}: node {node_id} ({node['class_type']}) has no "
                                    f"input {input_name!r}; it has: {', '.join(sorted(known))}.")
            node["inputs"][input_name] = _coerce(value, object_info, node["class_type"], input_name)
    return prompt


def find_nodes(prompt: dict, node_ref: str) -> list[str]:
    """Node ids for an id, else a title, else a node type; WorkflowError when nothing matches."""
    if node_ref in prompt:
        return [node_ref]
    for key in (lambda node: node.get("_meta", {}).get("title"), lambda node: node["class_type"]):
        matches = [node_id for node_id, node in prompt.items() if key(node) == node_ref]
        if matches:
            return matches
    described = ", ".join(f"{node_id} {node.get('_meta', {}).get('title', node['class_type'])!r}"
                          for node_id, node in prompt.items())
    raise WorkflowError(f"no node {node_ref!r} (by id, title or type). Nodes: {described}.")


def _text_encoders(prompt: dict, role: str) -> list[str]:
    """The nodes with a literal `text` that feed a sampler's positive/negative input, through conditioning nodes
    (WanImageToVideo passes `positive` to `positive`)."""
    found, frontier, seen = [], [], set()
    for node in prompt.values():
        if node["class_type"] in SAMPLER_TYPES and _is_link(node["inputs"].get(role)):
            frontier.append(node["inputs"][role][0])
    while frontier:
        node_id = frontier.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen.add(node_id)
        inputs = prompt[node_id]["inputs"]
        if isinstance(inputs.get("text"), str):
            found.append(node_id)
            continue
        frontier += [value[0] for name, value in inputs.items()
                     if _is_link(value) and (name == role or name.startswith("conditioning"))]
    return sorted(found, key=_id_sort_key)


def _set_literal_inputs(prompt: dict, option: str, names: tuple[str, ...], value):
    changed = 0
    for node in prompt.values():
        for name in names:
            if name in node["inputs"] and not _is_link(node["inputs"][name]):
                node["inputs"][name] = value
                changed += 1
    if not changed:
        raise WorkflowError(f"{option}: no node in this workflow has a {'/'.join(names)} input to set.")


def _declared_inputs(object_info: Optional[dict], class_type: str) -> set:
    info = (object_info or {}).get(class_type, {}).get("input", {})
    return set(info.get("required", {})) | set(info.get("optional", {}))


def _coerce(value, object_info: Optional[dict], class_type: str, input_name: str):
    """A --set value as the input's declared type; without a declaration, JSON if it parses, else the string."""
    if not isinstance(value, str):
        return value
    info = (object_info or {}).get(class_type, {}).get("input", {})
    spec = {**info.get("required", {}), **info.get("optional", {})}.get(input_name)
    kind = spec[0] if spec else None
    try:
        if kind == "INT":
            return int(value)
        if kind == "FLOAT":
            return float(value)
        if kind == "BOOLEAN":
            return {"true": True, "false": False, "1": True, "0": False}[value.lower()]
    except (ValueError, KeyError):
        raise WorkflowError(f"--set {class_type}.{input_name}={value}: {input_name} takes a {kind}.") from None
    if kind in ("STRING", "COMBO") or isinstance(kind, list):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# --------------------------------------------------------------------------- readable errors


def _node_label(prompt: dict, node_id: str, class_type: Optional[str] = None) -> str:
    node = prompt.get(str(node_id), {})
    class_type = class_type or node.get("class_type", "?")
    title = node.get("_meta", {}).get("title")
    if title and title != class_type:
        return f"node {node_id} ({title} / {class_type})"
    return f"node {node_id} ({class_type})"


def describe_rejection(body: dict, prompt: dict) -> str:
    """POST /prompt's 400 answer as lines a person can act on."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {"message": str(body.get("error"))}
    lines = [f"ComfyUI refused the prompt: {error.get('message', '')}".rstrip()]
    if error.get("details"):
        lines.append(f"  {error['details']}")
    for node_id, entry in (body.get("node_errors") or {}).items():
        lines.append(f"  {_node_label(prompt, node_id, entry.get('class_type'))}:")
        for item in entry.get("errors", []):
            input_name = (item.get("extra_info") or {}).get("input_name")
            where = f"{input_name}: " if input_name else ""
            lines.append(f"    {where}{item.get('message', '')}: {item.get('details', '')}".rstrip(": "))
            if item.get("type") == "value_not_in_list":
                lines.append("      (a model or file the server does not have: put it in the server's folder - see "
                             "workflows/models.md - or pick one it has with --set NODE.input=value)")
    return "\n".join(lines)


def describe_execution_error(data: dict, prompt: dict, traceback: bool = False) -> str:
    label = _node_label(prompt, data.get("node_id", "?"), data.get("node_type"))
    text = f"{label} failed: {data.get('exception_type', 'error')}: {data.get('exception_message', '').strip()}"
    if traceback and data.get("traceback"):
        text += "\n" + "".join(data["traceback"]).rstrip()
    return text


# --------------------------------------------------------------------------- the client


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


ProgressCallback = Callable[[dict], None]


class ComfyClient:
    """One ComfyUI server: HTTP for requests, a WebSocket (same client_id) for the events of the prompts it queues.

    headers go on every request and on the WebSocket handshake: for a reverse proxy that wants a token.
    """

    def __init__(self, url: str, *, headers: Optional[dict] = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
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
            raise HttpStatusError(method, path.split("?")[0], error.code, error.read()) from None
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
        """POST /prompt; the prompt_id, or PromptRejected with the server's reasons."""
        prompt_id = uuid.uuid4().hex
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
            raise ServerUnreachable(f"can't open the WebSocket {ws_url}: {error}") from None

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
               on_event: Optional[ProgressCallback] = None, reconnect_for: float = 60.0) -> dict:
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
            timeout: Optional[float] = None, on_event: Optional[ProgressCallback] = None) -> RunResult:
        """prepare + execute: queue the workflow, follow it to the end, download its files into out_dir."""
        return self.execute(self.prepare(workflow, overrides), workflow_extra(workflow), out_dir=out_dir,
                            timeout=timeout, on_event=on_event)

    def execute(self, prompt: dict, extra_data: Optional[dict] = None, *, out_dir: Optional[Path] = None,
                timeout: Optional[float] = None, on_event: Optional[ProgressCallback] = None) -> RunResult:
        """Queue an API prompt, follow it to the end, download its output files into out_dir (when given).

        Timeout, Ctrl-C or a lost server while following cancel the prompt on the server before re-raising.
        """
        self._connect()  # before queueing: the server sends a prompt's events only to a connected client
        try:
            prompt_id = self.submit(prompt, extra_data)
            try:
                entry = self.follow(prompt_id, timeout=timeout, on_event=on_event)
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


# --------------------------------------------------------------------------- progress display


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
            print(f"[{self.done}/{len(self.prompt)}] {_node_label(self.prompt, data['node'])}", file=self.stream)
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


# --------------------------------------------------------------------------- command line: `python -m streamvae run`


def add_run_command(commands) -> None:
    """Register `run` on the CLI's subparsers."""
    run = commands.add_parser("run", help="queue a workflow on a ComfyUI server, follow it, download the outputs",
                              description="Queue a workflow (UI or API format) on a ComfyUI server, show its progress, "
                                          "download what it saved. Exit 0 only when it succeeded.")
    run.add_argument("workflow", type=Path, help="workflow JSON, UI format (saved from the page) or API format")
    run.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI's URL (default %(default)s)")
    run.add_argument("--prompt", help="the positive prompt text")
    run.add_argument("--negative", help="the negative prompt text")
    run.add_argument("--seed", type=int)
    run.add_argument("--width", type=int)
    run.add_argument("--height", type=int)
    run.add_argument("--length", type=int, help="frames")
    run.add_argument("--fps", type=float)
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.input=value",
                     help="set any input; NODE is an id, a title or a node type; value @FILE uploads FILE to the "
                          "server's input folder and uses its name (repeatable)")
    run.add_argument("--out", type=Path, default=Path("."), help="folder for the downloaded outputs (default: here)")
    run.add_argument("--token", help="sent as 'Authorization: Bearer TOKEN' (a reverse proxy in front of ComfyUI)")
    run.add_argument("--header", dest="headers", action="append", default=[], metavar="'Key: value'",
                     help="an extra HTTP header on every request (repeatable)")
    run.add_argument("--timeout", type=float, help="give up (and cancel the prompt) after this many seconds")
    run.add_argument("--save-api", type=Path, metavar="FILE",
                     help="write the API prompt (converted, overrides applied) to FILE and exit without queueing")
    run.add_argument("--validate", action="store_true",
                     help="have the server validate the prompt, then take it off the queue (or interrupt it, if an "
                          "idle server already started it)")
    run.add_argument("--traceback", action="store_true", help="print the server's traceback on a node error")
    run.set_defaults(run=cmd_run)


def parse_set(text: str) -> tuple[str, str, str]:
    """'NODE.input=value' -> (NODE, input, value); NODE may itself hold dots (a title), the input name can't."""
    target, sep, value = text.partition("=")
    node, dot, input_name = target.rpartition(".")
    if not (sep and dot and node and input_name):
        raise WorkflowError(f"--set {text!r}: expected NODE.input=value, e.g. --set 3.steps=30 or "
                            f"--set 'Load VAE.vae_name=wan_2.1_vae.safetensors'.")
    return node, input_name, value


def parse_headers(token: Optional[str], headers: list[str]) -> dict:
    parsed = {}
    for text in headers:
        key, sep, value = text.partition(":")
        if not (sep and key.strip()):
            raise WorkflowError(f"--header {text!r}: expected 'Key: value'.")
        parsed[key.strip()] = value.strip()
    if token:
        parsed["Authorization"] = f"Bearer {token}"
    return parsed


def load_workflow(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such file.") from None
    except json.JSONDecodeError as error:
        raise WorkflowError(f"{path}: not JSON ({error}).") from None


def cmd_run(args) -> int:
    try:
        return _run(args)
    except PromptRejected as error:
        print(error, file=sys.stderr)
        return 1
    except RunTimeout as error:
        print(f"error: {error} It was cancelled on the server; raise --timeout for long videos.", file=sys.stderr)
        return error.exit_code
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: a prompt already queued was taken off the server's queue or interrupted",
              file=sys.stderr)
        return 130


def _run(args) -> int:
    workflow = load_workflow(args.workflow)
    overrides = Overrides(prompt=args.prompt, negative=args.negative, seed=args.seed, width=args.width,
                          height=args.height, length=args.length, fps=args.fps,
                          sets=[parse_set(text) for text in args.sets])
    client = ComfyClient(args.server, headers=parse_headers(args.token, args.headers))
    if args.save_api:
        args.save_api.write_text(json.dumps(client.prepare(workflow, overrides), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.save_api}")
        return 0
    if args.validate:
        prompt = client.validate(workflow, overrides)
        print(f"valid: {len(prompt)} nodes; taken off the queue")
        return 0
    prompt = client.prepare(workflow, overrides)
    printer = ProgressPrinter(prompt)
    try:
        result = client.execute(prompt, workflow_extra(workflow), out_dir=args.out, timeout=args.timeout,
                                on_event=printer)
    finally:
        printer.close()
    return _report(result, args.traceback)


def _report(result: RunResult, traceback: bool) -> int:
    if result.status == "success":
        for path in result.files:
            print(path)
        if not result.files:
            print("done; the workflow saved no files", file=sys.stderr)
        return 0
    if result.status == "interrupted":
        print(f"prompt {result.prompt_id} was interrupted on the server", file=sys.stderr)
        return 1
    if result.error is None:
        print(f"prompt {result.prompt_id} ended without success and without an error report; see the server's log",
              file=sys.stderr)
    else:
        print(describe_execution_error(result.error, result.prompt, traceback), file=sys.stderr)
    return 1

