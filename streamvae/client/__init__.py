"""Headless ComfyUI client: queue a workflow on a (remote) ComfyUI, follow it, download what it saved.

    from streamvae.client import ComfyClient, Overrides
    result = ComfyClient("http://127.0.0.1:8188").run(workflow, Overrides(prompt="a red fox", seed=7), out_dir="out")
    result.ok, result.files, result.error

The client imports and runs without torch or ComfyUI (the package loads the engine only when an engine name is
used; tests/test_client_imports.py checks it). One job a module:

    formats.py           the two workflow formats told apart; how values and node ids read in an API prompt
    ui_workflow.py       a UI-format workflow -> the API prompt the page's Queue button would send
    overrides.py         --prompt, --seed, --set ... applied to an API prompt
    comfy_client.py      ComfyClient: HTTP and a WebSocket to one server; queue, follow, cancel, download
    headers.py           a reverse proxy's token (--token-file, $STREAMVAE_TOKEN) and --header, never shown
    errors.py            what stops a run, each with its exit code
    error_text.py        the server's refusals and node failures as lines a person can act on
    progress_printer.py  a line per node and a bar per node's steps while a prompt runs
    run_command.py       `python -m streamvae run`: its options, what it prints, its exit codes
"""

from .comfy_client import ComfyClient, RunResult, output_files, workflow_extra
from .errors import ClientError, HttpStatusError, PromptRejected, RunTimeout, ServerUnreachable, WorkflowError
from .formats import is_api_format, is_ui_format
from .overrides import Overrides, apply_overrides, find_nodes
from .ui_workflow import ui_to_api, widget_inputs, widget_values_by_name

__all__ = ["ClientError", "ComfyClient", "HttpStatusError", "Overrides", "PromptRejected", "RunResult", "RunTimeout",
           "ServerUnreachable", "WorkflowError", "apply_overrides", "find_nodes", "is_api_format", "is_ui_format",
           "output_files", "ui_to_api", "widget_inputs", "widget_values_by_name", "workflow_extra"]
