"""UI-format workflows (what the page saves) turned into the API prompt the page would queue.

The frontend's graphToPrompt does this when you press Queue, using each node's definition from /object_info to map
its `widgets_values` to input names. Read here the way litegraph reads a graph: muted and bypassed nodes, reroutes,
PrimitiveNodes, dynamic combos (a choice that adds its own widgets, sent as "combo.input"), autogrow sockets, and
subgraphs (flattened into "instance:node" ids), with the values an instance gives the widgets it shows (its
promoted widgets: `properties.proxyWidgets` in newer frontends). Legacy group nodes are refused with the way out
(the page's Export (API)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from .errors import WorkflowError
from .formats import api_value, id_sort_key, is_link, is_ui_format

# Frontend-only node types: they never reach the server (litegraph's isVirtualNode).
VIRTUAL_NODE_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASSED = 2, 4  # litegraph's LGraphEventMode NEVER and BYPASS
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# A combo whose choice adds that option's own widgets right after it, named "<combo>.<input>" (nested ones
# "<combo>.<input>.<input>"): newer Save Video's codec settings, for one. Autogrow inputs (COMFY_AUTOGROW_V3) are
# sockets only ("values.a", ...), read like any other link.
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
# `image_upload: true` and friends add an "upload" button whose value ("image", ...) is saved after the combo.
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")


@dataclass
class _Widget:
    name: str
    has_seed_control: bool
    has_upload_button: bool
    default: Any  # what the page shows for a widget the file has no value for (a node that gained a widget)
    options: Optional[dict] = None  # a dynamic combo's {choice: [the widgets it adds]}


def _ordered_specs(inputs: dict, order: Optional[dict] = None) -> list[tuple[str, list]]:
    """(name, spec) of a node definition's (or a dynamic combo option's) inputs: required, then optional."""
    order = order or {group: list(inputs.get(group) or {}) for group in ("required", "optional")}
    return [(name, inputs[group][name]) for group in ("required", "optional")
            for name in order.get(group, []) if (inputs.get(group) or {}).get(name)]


def widget_inputs(node_info: dict) -> list[_Widget]:
    """The inputs of a node definition that the frontend shows as widgets, in widget order (a dynamic combo's own
    widgets come with its choice: see widget_values_by_name)."""
    specs = _ordered_specs(node_info.get("input", {}), node_info.get("input_order"))
    return [widget for widget in (_widget(name, spec) for name, spec in specs) if widget]


def _widget(name: str, spec: list) -> Optional[_Widget]:
    """A widget for an INT/FLOAT/STRING/BOOLEAN/COMBO or dynamic combo input not forced to be a socket, else None.
    The frontend adds a seed-control combo after INT widgets flagged `control_after_generate`, or, unflagged,
    named seed/noise_seed."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if not (isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO) or options.get("forceInput"):
        return None
    if kind == DYNAMIC_COMBO:
        added = {option["key"]: [widget for widget in (_widget(f"{name}.{inner}", inner_spec) for inner, inner_spec
                                                       in _ordered_specs(option.get("inputs") or {})) if widget]
                 for option in options.get("options") or []}
        return _Widget(name, False, False, options.get("default", next(iter(added), None)), added)
    control = options.get("control_after_generate")
    if control is None:
        control = kind == "INT" and name in ("seed", "noise_seed")
    choices = kind if isinstance(kind, list) else options.get("options") or [None]
    default = options.get("default", choices[0] if choices else None)
    return _Widget(name, bool(control), any(options.get(option) for option in UPLOAD_OPTIONS), default)


def widget_values_by_name(node: dict, node_info: dict) -> dict:
    """widgets_values (a list in widget order, or a dict keyed by name from some packs) as {input name: value}.

    A widget the file has no value for (saved before the node gained it) gets its default, as on the page. A
    dynamic combo's value decides which widgets follow it, as the page inserts them when it sets the value."""
    values = node.get("widgets_values")
    by_name = values if isinstance(values, dict) else None
    positional = [] if by_name is not None else list(values or [])
    named, index = {}, 0
    pending = widget_inputs(node_info)
    while pending:
        widget = pending.pop(0)
        if by_name is not None:
            saved, value = widget.name in by_name, by_name.get(widget.name)
        else:
            saved, value = index < len(positional), positional[index] if index < len(positional) else None
            # The page assigns widgets_values by position, its extra widgets included, whatever the values are.
            index += 1 + widget.has_seed_control + widget.has_upload_button
        if not saved:
            value = widget.default
        if saved or widget.default is not None:
            named[widget.name] = api_value(value)
        if widget.options is not None:
            pending[0:0] = widget.options.get(value, [])
    return named


def _types_match(a, b) -> bool:
    """litegraph's isValidConnection: '*' or '' match anything, 'A,B' lists match on any common type."""
    a, b = str(a or "").lower(), str(b or "").lower()
    if a in ("*", "") or b in ("*", ""):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE = "-10", "-20"  # the ids of a subgraph's input and output nodes
SUBGRAPH_INPUT_NODE_ID = "-1"  # how proxyWidgets names a widget of the subgraph's own input, not an inner node's


def _proxy_widgets(instance: dict) -> Optional[list[tuple[str, str]]]:
    """A subgraph instance's promoted widgets, `properties.proxyWidgets` (a list, or that list as a JSON string in
    some frontend versions), as (inner node id, widget name); None when it has none."""
    proxies = (instance.get("properties") or {}).get("proxyWidgets")
    if isinstance(proxies, str):
        try:
            proxies = json.loads(proxies)
        except json.JSONDecodeError:
            raise WorkflowError(f"subgraph node {instance.get('id')}: properties.proxyWidgets is not JSON "
                                f"({proxies[:80]!r}); re-save the workflow from the page.") from None
    if not isinstance(proxies, list):
        return None
    return [(str(item[0]), str(item[1])) for item in proxies if isinstance(item, (list, tuple)) and len(item) >= 2]


def _widget_input_names(definition: dict) -> list[str]:
    """The names of a subgraph definition's inputs that feed an inner node's widget, in order: the widgets the
    page shows on an instance without proxyWidgets."""
    inner = {str(node["id"]): node for node in definition.get("nodes") or []}
    feeds_widget = set()
    for origin, slot, target, target_slot in _link_table(definition.get("links")).values():
        sockets = (inner.get(target) or {}).get("inputs") or []
        if origin == SUBGRAPH_INPUT_NODE and target_slot < len(sockets) and sockets[target_slot].get("widget"):
            feeds_widget.add(slot)
    return [item.get("name") for slot, item in enumerate(definition.get("inputs") or []) if slot in feeds_widget]


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
        """(scope, node) for every node that reaches the server, subgraph instances expanded.

        Muted and bypassed nodes don't; nor do the inner nodes of a muted or bypassed subgraph instance in the root
        graph. One nested inside a subgraph is expanded all the same, its inner nodes running in their own modes:
        that is what the page queues (frontend 1.48)."""
        for node in self.nodes.values():
            muted = node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED)
            if node["type"] in self.definitions:
                if not (muted and not self.path):
                    yield from self.inside(node).executable_nodes()
            elif not muted and node["type"] not in VIRTUAL_NODE_TYPES:
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
        """A link from the subgraph's input node: what feeds the instance's input outside, else the instance's value
        for that input's widget, else None (the inner node keeps its own widget value).

        The definition's inputs are the truth (the page rebuilds an instance's sockets from them on load); the
        instance's saved sockets are matched to them by name."""
        definition_inputs = self.definitions[self.instance["type"]].get("inputs") or []
        if slot >= len(definition_inputs):
            return None
        name = definition_inputs[slot].get("name")
        instance_inputs = self.instance.get("inputs") or []
        index = next((i for i, item in enumerate(instance_inputs) if item.get("name") == name), None)
        if index is not None and instance_inputs[index].get("link") is not None:
            return self.parent.resolve_input(self.instance, index, None, seen)
        promoted = self.promoted_values()
        return ("value", promoted[(SUBGRAPH_INPUT_NODE_ID, name)]) if (SUBGRAPH_INPUT_NODE_ID, name) in promoted \
            else None

    def promoted_values(self) -> dict:
        """The instance's own values for the widgets it shows: {(inner node id, widget name): value}, with the
        subgraph input node's id for a widget the definition's own input makes.

        With `properties.proxyWidgets` ([[inner node id, widget name], ...], the newer frontends' promoted
        widgets), the instance's widgets_values follow that list; without it, the definition's inputs that feed a
        widget, in order. An instance's value for an inner node's widget wins over the inner node's own, as
        frontend 1.48 queues it (1.35 kept the inner node's)."""
        if self.instance is None:
            return {}
        values = self.instance.get("widgets_values")
        if not isinstance(values, list):
            return {}
        proxies = _proxy_widgets(self.instance)
        if proxies is None:
            definition = self.definitions[self.instance["type"]]
            proxies = [(SUBGRAPH_INPUT_NODE_ID, name) for name in _widget_input_names(definition)]
        # null: a promoted widget that holds no value of its own (frontends before 1.48 save those as null)
        return {proxy: value for proxy, value in zip(proxies, values) if value is not None}

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
    subgraphs are flattened into "instance:node" ids (an instance's values for its widgets replacing the inner
    nodes' own), and inputs linked to a left-out node are removed.
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
    for scope, node in sorted(executable, key=lambda item: id_sort_key(item[0].execution_id(item[1]))):
        info = object_info[node["type"]]
        inputs = widget_values_by_name(node, info)
        for (target, name), value in scope.promoted_values().items():  # the instance's values win
            if target == str(node["id"]) and name in inputs:
                inputs[name] = api_value(value)
        for slot, item in enumerate(node.get("inputs") or []):
            resolved = scope.resolve_input(node, slot)
            if resolved is None:
                continue
            inputs[item["name"]] = api_value(resolved[1]) if resolved[0] == "value" else [resolved[0], resolved[1]]
        title = node.get("title") or info.get("display_name") or node["type"]
        prompt[scope.execution_id(node)] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}

    for node in prompt.values():  # links to muted nodes (or to nothing) go, as in graphToPrompt
        for name, value in list(node["inputs"].items()):
            if is_link(value) and value[0] not in prompt:
                del node["inputs"][name]
    return prompt


def _refuse_group_nodes(workflow: dict):
    legacy = sorted({node["type"] for node in workflow["nodes"] if str(node["type"]).startswith("workflow>")})
    if legacy:
        raise WorkflowError(
            f"this workflow uses legacy group nodes ({', '.join(legacy)}), which this client does not expand. Open "
            "it in the ComfyUI page (which converts them) and use Workflow > Export (API), then run that file.")
