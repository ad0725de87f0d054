"""What stops a run, as exceptions: each names the problem and the fix, and carries the exit code `python -m
streamvae run` ends with."""

from __future__ import annotations

from .error_text import describe_rejection


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
        hint = (" Give the proxy's token with --token-file PATH or the STREAMVAE_TOKEN environment variable, or the "
                "header it wants with --header." if status in (401, 403) else "")
        super().__init__(f"{method} {path} answered {status}: {body[:300].decode(errors='replace')}{hint}")


class PromptRejected(ClientError):
    """POST /prompt answered 400: the server's validation refused the prompt; nothing ran."""

    status = 400

    def __init__(self, body: dict, prompt: dict):
        self.body = body
        self.error = body.get("error") if isinstance(body.get("error"), dict) else {"message": str(body.get("error"))}
        self.node_errors = body.get("node_errors") or {}
        super().__init__(describe_rejection(body, prompt))


class RunTimeout(ClientError):
    exit_code = 124
