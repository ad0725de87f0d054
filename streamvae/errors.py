"""Exceptions the engine raises on purpose.

Every message names the problem and the fix, because these reach users as ComfyUI execution errors or CLI
output, not as tracebacks.
"""


class StreamVAEError(ValueError):
    """Bad input or an unusable setting: the message says what is wrong and what to do instead."""


class EncoderError(RuntimeError):
    """The video encoder or the output file failed mid-stream (disk full, encoder crash, folder removed)."""


class Cancelled(Exception):
    """The caller's cancel check asked the decode to stop; nothing was written."""
