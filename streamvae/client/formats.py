"""ComfyUI's two workflow formats: how to tell them apart, and how values and node ids read in an API prompt.

UI format is what the page saves (`{"nodes", "links", ...}`); API format is what /prompt takes
(`{id: {"class_type", "inputs"}}`), where an input is a literal value or a link `[node id, output slot]`.
"""

from __future__ import annotations


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def is_api_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and bool(workflow) and all(
        isinstance(node, dict) and "class_type" in node for node in workflow.values())


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def api_value(value):
    # A list would read as a link [node_id, slot]; the frontend wraps list values and the server unwraps them.
    return {"__value__": value} if isinstance(value, list) else value


def id_sort_key(node_id: str):
    """Numeric order for ids like "12" and "12:5" (subgraph paths); anything else after them, by name."""
    parts = node_id.split(":")
    return (0, tuple(map(int, parts)), "") if all(part.isdigit() for part in parts) else (1, (), node_id)
