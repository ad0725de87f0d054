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


def is_out_of_memory(error: BaseException) -> bool:
    """The GPU ran out of memory: PyTorch's allocator said so (OutOfMemoryError), or a CUDA call failed to allocate
    and newer PyTorch reported it as an AcceleratorError (CUDA error 2, "out of memory"), which ComfyUI 0.38 also
    treats as out of memory."""
    import torch  # noqa: PLC0415 - this module stays importable without torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (accelerator_error is not None and isinstance(error, accelerator_error)
            and (getattr(error, "error_code", None) == 2 or "out of memory" in str(error).lower()))
