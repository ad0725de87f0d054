"""What `--prompt`, `--seed`, `--set NODE.input=value` and friends change in an API prompt before it is queued."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import WorkflowError
from .formats import id_sort_key, is_link


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
        if node["class_type"] in SAMPLER_TYPES and is_link(node["inputs"].get(role)):
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
                     if is_link(value) and (name == role or name.startswith("conditioning"))]
    return sorted(found, key=id_sort_key)


def _set_literal_inputs(prompt: dict, option: str, names: tuple[str, ...], value):
    changed = 0
    for node in prompt.values():
        for name in names:
            if name in node["inputs"] and not is_link(node["inputs"][name]):
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
