"""The server's refusals and node failures as lines a person can act on, and nodes named as a person knows them."""

from __future__ import annotations

from typing import Optional


def node_label(prompt: dict, node_id: str, class_type: Optional[str] = None) -> str:
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
        lines.append(f"  {node_label(prompt, node_id, entry.get('class_type'))}:")
        for item in entry.get("errors", []):
            input_name = (item.get("extra_info") or {}).get("input_name")
            where = f"{input_name}: " if input_name else ""
            lines.append(f"    {where}{item.get('message', '')}: {item.get('details', '')}".rstrip(": "))
            if item.get("type") == "value_not_in_list":
                lines.append("      (a model or file the server does not have: put it in the server's folder - see "
                             "workflows/models.md - or pick one it has with --set NODE.input=value)")
    return "\n".join(lines)


def describe_execution_error(data: dict, prompt: dict, traceback: bool = False) -> str:
    label = node_label(prompt, data.get("node_id", "?"), data.get("node_type"))
    text = f"{label} failed: {data.get('exception_type', 'error')}: {data.get('exception_message', '').strip()}"
    if traceback and data.get("traceback"):
        text += "\n" + "".join(data["traceback"]).rstrip()
    return text
