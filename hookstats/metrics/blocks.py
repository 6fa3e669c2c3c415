"""Float64 sums and Gram matrices of float32 matrices, one block at a time.

A float64 copy of a big matrix costs more than it seems: GPT-2's 50257 x 768 embedding is
309 MB, and writing fresh memory that size took 0.45 s (page faults), a quarter of its Gram.
:func:`matrix_sums` converts a block of rows (tall matrices) or columns (wide ones) at a time
into a per-thread buffer that is reused, and accumulates from each block:

* the plain sums (total, sum of squares, sum of absolute values) in float64, and
* optionally the smaller Gram matrix ``AᵀA`` (tall) or ``AAᵀ`` (wide) as a sum of the blocks'
  Grams -- each a float64 ``syrk``; splitting the inner dimension changes only the order of
  float64 additions. A Gram wider than ``GRAM_PANEL`` is *streamed*: each block adds its
  product into the Gram's lower triangle one column panel at a time
  (``G[j:, j:j+w] += B[:, j:]ᵀ B[:, j:j+w]``), so no second ``r x r`` matrix is ever made (the
  plain ``G += BᵀB`` makes one per block); only the lower triangle is complete (above the
  diagonal panels it is zero), and eigen-solvers read the lower one (``eigvalsh``'s default).

:func:`centred_sumsq` is the second pass for variances whose one-pass formula cancels.

Example:
    >>> import numpy as np
    >>> sums = matrix_sums(np.arange(6, dtype=np.float32).reshape(2, 3), with_gram=True)
    >>> sums.total, sums.sumsq, sums.gram.tolist()
    (15.0, 55.0, [[5.0, 14.0], [14.0, 50.0]])
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MatrixSums", "centred_sumsq", "float64_blocks", "matrix_sums"]

BLOCK_ELEMENTS = 1 << 21
"""Elements converted to float64 at a time (16 MiB per worker thread)."""
GRAM_PANEL = 512
"""Grams wider than this are accumulated in column panels of this width (lower triangle)."""
_local = threading.local()


@dataclass(frozen=True, slots=True)
class MatrixSums:
    """Float64 sums over every element of a matrix, and its smaller Gram when asked for."""

    total: float
    sumsq: float
    abs_total: float
    gram: np.ndarray | None


def _buffer(size: int) -> np.ndarray:
    """This thread's reusable float64 scratch of at least ``size`` elements."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _local.buffer = np.empty(max(size, 1))
    return buffer[:size]


def float64_blocks(a: np.ndarray) -> Iterator[np.ndarray]:
    """Float64 copies of ``a``'s row blocks (tall ``a``) or column blocks (wide ``a``), each
    written into the same per-thread buffer (consume one before asking for the next)."""
    m, n = a.shape
    if m >= n:
        rows = max(1, min(m, BLOCK_ELEMENTS // max(n, 1)))
        for start in range(0, m, rows):
            part = a[start : start + rows]
            block = _buffer(part.size).reshape(part.shape)
            np.copyto(block, part)
            yield block
    else:
        cols = max(1, min(n, BLOCK_ELEMENTS // max(m, 1)))
        for start in range(0, n, cols):
            part = a[:, start : start + cols]
            block = _buffer(part.size).reshape(part.shape)
            np.copyto(block, part)
            yield block


def matrix_sums(a: np.ndarray, with_gram: bool) -> MatrixSums:
    """Float64 total, sum of squares and sum of absolute values of 2-D ``a``, and (with
    ``with_gram``) its ``r x r`` Gram, ``r = min(a.shape)``. Non-finite input gives non-finite
    sums (the Gram is then meaningless)."""
    total = sumsq = abs_total = 0.0
    gram = None
    tall = a.shape[0] >= a.shape[1]
    r = min(a.shape)
    streamed = with_gram and r > GRAM_PANEL
    if streamed:
        gram = np.zeros((r, r))
        scratch = np.empty(r * GRAM_PANEL)
    for block in float64_blocks(a):
        flat = block.reshape(-1)
        total += float(flat.sum())
        sumsq += float(flat @ flat)
        abs_total += float(torch.linalg.vector_norm(torch.from_numpy(flat), 1))  # no temporary
        if streamed:
            _add_lower_gram(gram, block if tall else block.T, scratch)  # type: ignore[arg-type]
        elif with_gram:
            part = block.T @ block if tall else block @ block.T  # numpy calls syrk
            gram = part if gram is None else gram.__iadd__(part)
    if with_gram and gram is None:
        gram = np.zeros((r, r))
    return MatrixSums(total, sumsq, abs_total, gram)


def _add_lower_gram(gram: np.ndarray, block: np.ndarray, scratch: np.ndarray) -> None:
    """``gram += blockᵀ block`` on the lower triangle, one column panel at a time, through a
    reused ``r x GRAM_PANEL`` scratch (about half the work of the full product, like syrk)."""
    r = gram.shape[0]
    for start in range(0, r, GRAM_PANEL):
        stop = min(start + GRAM_PANEL, r)
        part = scratch[: (r - start) * (stop - start)].reshape(r - start, stop - start)
        np.matmul(block[:, start:].T, block[:, start:stop], out=part)
        gram[start:, start:stop] += part


def centred_sumsq(a: np.ndarray, mean: float) -> float:
    """``sum((a - mean)**2)`` in float64, blockwise (the exact second pass of a variance)."""
    result = 0.0
    for block in float64_blocks(a):
        flat = block.reshape(-1)
        flat -= mean
        result += float(flat @ flat)
    return result
