"""The extra HTTP headers `python -m streamvae run` sends, for a reverse proxy in front of ComfyUI: its token (as
`Authorization: Bearer TOKEN`) and any `--header 'Key: value'`.

A token typed on the command line can be read by every user of the machine (`ps`, /proc/PID/cmdline), so it comes
from --token-file or $STREAMVAE_TOKEN; --token still works, with a warning. No message here shows a token or a
header's value: they end up in terminals, logs and CI output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from .errors import WorkflowError

TOKEN_ENV = "STREAMVAE_TOKEN"
PRIVATE_WAYS = f"--token-file PATH (a file only you can read) or the {TOKEN_ENV} environment variable"
# Header values shorter than this (a flag such as "1") are no secret, and hiding them would garble messages.
SHORTEST_SECRET = 4


def request_headers(headers: list[str], token: Optional[str], token_file: Optional[Path]) -> dict:
    """{name: value} from the --header options and the proxy token (--token-file, --token or $STREAMVAE_TOKEN)."""
    parsed = dict(_parse_header(text) for text in headers)
    token = proxy_token(token, token_file)
    if token:
        parsed["Authorization"] = f"Bearer {token}"
    return parsed


def proxy_token(token: Optional[str], token_file: Optional[Path]) -> Optional[str]:
    """The token from --token-file, else --token (with a warning), else $STREAMVAE_TOKEN; None when none is given."""
    if token is not None and token_file is not None:
        raise WorkflowError(f"--token and --token-file both given; give the token once, with {PRIVATE_WAYS}.")
    if token_file is not None:
        return _checked(_read_token_file(Path(token_file)), f"the token in {token_file}")
    if token is not None:
        _warn(f"--token is visible to other users of this machine (ps); use {PRIVATE_WAYS} instead.")
        return _checked(token, "--token")
    if os.environ.get(TOKEN_ENV):
        return _checked(os.environ[TOKEN_ENV], f"${TOKEN_ENV}")
    return None


def _read_token_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise WorkflowError(f"--token-file {path}: no such file. Write the token into it (then chmod 600 {path}), "
                            f"or set {TOKEN_ENV}.") from None
    except OSError as error:
        raise WorkflowError(f"--token-file {path}: can't read it ({error.strerror}).") from None
    except UnicodeDecodeError:  # its message quotes bytes of the file: not shown
        raise WorkflowError(f"--token-file {path}: not UTF-8 text; put the token in it as plain text.") from None
    if os.name == "posix" and mode & 0o077:
        _warn(f"{path} can be read by other users of this machine (mode {mode & 0o777:o}); chmod 600 {path}")
    return text


def _checked(token: str, where: str) -> str:
    """The token without surrounding whitespace (a file's trailing newline), or WorkflowError if a header can't
    carry it. The token itself is never part of the message."""
    token = token.strip()
    if not token:
        raise WorkflowError(f"{where} is empty; put the proxy's token there, on one line.")
    if not _fits_a_header(token) or " " in token:
        raise WorkflowError(f"{where} holds a space, a line break or a non-ASCII character, which an HTTP header "
                            "can't carry; give the token alone, on one line (it is not shown here).")
    return token


def _parse_header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not (sep and key.strip()):
        raise WorkflowError("a --header is not 'Key: value' (it is not shown here: it may hold a secret).")
    if not (_fits_a_header(key.strip()) and _fits_a_header(value.strip())):
        raise WorkflowError(f"--header {key.strip()!r}: its value holds a line break or a non-ASCII character, "
                            "which an HTTP header can't carry (the value is not shown here).")
    return key.strip(), value.strip()


def redact(text: str, headers: dict) -> str:
    """`text` with every header value sent (and a Bearer token alone) replaced by ***: for messages made of what a
    server or proxy answered, which may quote the request back ("invalid token: ...")."""
    for value in headers.values():
        for secret in (value, value.removeprefix("Bearer ")):
            if len(secret) >= SHORTEST_SECRET:
                text = text.replace(secret, "***")
    return text


def _fits_a_header(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
