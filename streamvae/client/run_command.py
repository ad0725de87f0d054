"""`python -m streamvae run`: the options, one run of ComfyClient, what is printed and the exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .comfy_client import ComfyClient, RunResult, workflow_extra
from .error_text import describe_execution_error
from .errors import ClientError, PromptRejected, RunTimeout, WorkflowError
from .headers import TOKEN_ENV, request_headers
from .overrides import Overrides
from .progress_printer import ProgressPrinter


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
    run.add_argument("--token-file", type=Path, metavar="PATH",
                     help="a file holding the token of a reverse proxy in front of ComfyUI, sent as 'Authorization: "
                          f"Bearer TOKEN'; or set {TOKEN_ENV}")
    run.add_argument("--token", help="the token itself: other users of this machine can read it (ps); prefer "
                                     f"--token-file or {TOKEN_ENV}")
    run.add_argument("--header", dest="headers", action="append", default=[], metavar="'Key: value'",
                     help="an extra HTTP header on every request (repeatable; visible in ps like --token)")
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
    client = ComfyClient(args.server, headers=request_headers(args.headers, args.token, args.token_file))
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
