"""Spatial tiles for a Wan decode that does not fit in GPU memory.

When a chunk runs out of memory, the chunk loop (wan.py) goes on in tiles: the latent's height and width are cut
into a grid, each tile reads a halo of HALO latent pixels beyond its share on inner sides, and every tile steps
through time with a causal cache of its own. Neighbouring tiles' pixels are cross-faded over their overlap
(weights summing to 1), as ComfyUI's tiled VAE decode does, so seams don't show; tiled frames are close to, not
equal to, the untiled decode (each tile sees zero padding at its edges instead of its neighbours' pixels).

Tiles shrink what one step computes at once, not the causal cache: every tile keeps the last frames each layer
saw of its part of the frame, halo included, so all tiles together hold more cache than the whole frame does
(docs/benchmarks.md, "Out of GPU memory", has the sizes), the more so the closer tiles get to MIN_SHARE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

HALO = 4  # latent pixels a tile reads beyond its share on an inner side: 32 px (Wan 2.1) or 64 px (Wan 2.2)
MIN_SHARE = 2 * HALO  # a tile's own rows/columns: below this, one tile's two cross-fades would overlap


@dataclass(frozen=True)
class Span:
    """One axis of a tile, in latent pixels: it owns [start, stop) and decodes [start - halo, stop + halo)."""

    start: int
    stop: int
    length: int  # the whole axis

    @property
    def read(self) -> slice:
        return slice(max(0, self.start - HALO), min(self.length, self.stop + HALO))

    def ramp(self, scale: int, device: torch.device) -> torch.Tensor:
        """Blend weight per output pixel of `read`: 1 in the middle, fading linearly to 0 across each inner
        overlap. Where two tiles overlap the fades are mirror images, so the weights sum to exactly 1."""
        read = self.read
        pixels = torch.arange(read.start * scale, read.stop * scale, device=device, dtype=torch.float32) + 0.5
        fade = 2 * HALO * scale
        weight = torch.ones_like(pixels)
        if read.start > 0:
            weight = torch.minimum(weight, (pixels - read.start * scale) / fade)
        if read.stop < self.length:
            weight = torch.minimum(weight, (read.stop * scale - pixels) / fade)
        return weight


def split(length: int, parts: int) -> list[Span]:
    """`parts` spans of near-equal share covering [0, length)."""
    edges = [round(index * length / parts) for index in range(parts + 1)]
    return [Span(start, stop, length) for start, stop in zip(edges, edges[1:])]


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span

    def crop(self, tensor: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """The part of a `[..., h*scale, w*scale]` tensor this tile reads (a view)."""
        rows, cols = self.rows.read, self.cols.read
        return tensor[..., rows.start * scale:rows.stop * scale, cols.start * scale:cols.stop * scale]

    def blend_weights(self, scale: int, device: torch.device) -> torch.Tensor:
        return self.rows.ramp(scale, device)[:, None] * self.cols.ramp(scale, device)[None, :]


@dataclass(frozen=True)
class TileGrid:
    rows: int = 1
    cols: int = 1

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def tiles(self, height: int, width: int) -> list[Tile]:
        return [Tile(rows, cols) for rows in split(height, self.rows) for cols in split(width, self.cols)]

    def finer(self, height: int, width: int) -> Optional["TileGrid"]:
        """The next grid to try after running out of memory: twice the tiles, cutting the axis whose tiles are
        longer; None when tiles would get too small to cross-fade."""
        if height / self.rows >= width / self.cols:
            candidate = TileGrid(self.rows * 2, self.cols)
        else:
            candidate = TileGrid(self.rows, self.cols * 2)
        if height // candidate.rows < MIN_SHARE or width // candidate.cols < MIN_SHARE:
            return None
        return candidate
