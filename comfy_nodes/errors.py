"""What users see when a streaming node fails: ComfyUI's own interrupt, or one readable sentence.

ComfyUI shows an exception's message in its error dialog and sends it as `exception_message`. The engine's errors
already say what to fix; a cancel must become ComfyUI's InterruptProcessingException so the queue reports an
interrupt, not a failure; anything else (a CUDA or PyTorch error deep in the decoder) gets a sentence in front that
says which node and decoder hit it, with the original kept as the cause for the log.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import comfy.model_management

from ..streamvae import Cancelled, EncoderError, StreamVAEError
from ..streamvae.errors import is_out_of_memory


class StreamingNodeError(RuntimeError):
    """An unexpected failure inside decoding or encoding, reworded for the user."""


@contextmanager
def user_facing_errors(action: str) -> Iterator[None]:
    """Run a node's work; `action` names it in messages ("writing the video", "decoding the latent")."""
    try:
        yield
    except Cancelled:
        # The engine saw processing_interrupted() while waiting; hand ComfyUI the exception it expects.
        raise comfy.model_management.InterruptProcessingException() from None
    except (StreamVAEError, EncoderError, comfy.model_management.InterruptProcessingException):
        raise
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise  # ComfyUI recognises OOM: it unloads models and adds its own tips
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StreamingNodeError(f"{action} failed: {first_line}") from error

