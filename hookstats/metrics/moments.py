"""Streaming float64 moments of tensors, mergeable, with no tensor kept: the math of the
activation metrics.

The statistics of a stream of tensors ``x`` (all their elements pooled) are held as eight
float64 numbers, a *part*:

``count, mean, m2, m3, m4, min, max, zeros``

with ``m_p = sum((x - mean)**p)`` the central sums, ``min``/``max`` the extremes and ``zeros``
the number of elements equal to 0. A tensor's part is computed in two passes over a float64
copy of one chunk at a time (:data:`CPU_CHUNK` elements on the CPU, into buffers kept per
thread; :data:`CHUNK` on a GPU; so a large output never needs a float64 copy of itself): the
chunk's mean, then the central sums of ``d = x - mean`` as dot products.
Parts are pooled exactly (in exact arithmetic) by the shifted-moment identities: with
``N = sum(n_i)``, ``mean = sum(n_i mean_i) / N`` and ``delta_i = mean_i - mean``,

* ``m2 = sum(m2_i + n_i delta_i**2)``
* ``m3 = sum(m3_i + 3 delta_i m2_i + n_i delta_i**3)``
* ``m4 = sum(m4_i + 4 delta_i m3_i + 6 delta_i**2 m2_i + n_i delta_i**4)``

(the binomial expansion of ``sum((x - mean_i + delta_i)**p)`` with ``sum(x - mean_i) = 0``).
Each term is a sum of squares or a product of small corrections, so no large numbers cancel,
unlike raw power sums ``sum(x**p)``; this is the many-part form of Chan et al.'s and Pébay's
pairwise updates. A part stays a tensor on the device of the values it describes, so streaming
never waits for the device (:class:`MomentAccumulator` folds every :data:`FOLD` parts there);
:meth:`Moments.of` reads one back once, at the end, and :func:`read_parts` reads many with one
transfer per device. A reader (another thread: a live view) copies the list of parts under the
accumulator's lock and pools them outside it, so a stream that goes on never waits for a
reader.

A NaN or Inf in the input makes ``mean`` non-finite, which :attr:`Moments.finite` reports.

May import: torch.

Example:
    >>> part = tensor_moments(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    >>> m = Moments.of(part)
    >>> m.count, m.mean, m.variance, m.zeros, m.absmax
    (4, 1.5, 1.25, 1, 3.0)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "CHUNK",
    "FIELDS",
    "FOLD",
    "MEASURES",
    "MomentAccumulator",
    "Moments",
    "pool_moments",
    "read_parts",
    "tensor_moments",
]

FIELDS = ("count", "mean", "m2", "m3", "m4", "min", "max", "zeros")
"""The eight numbers of a part, in order."""
CHUNK = 1 << 21
"""Elements converted to float64 at a time on a GPU (16 MiB of float64, about 3 such buffers
live, from the device's caching allocator)."""
CPU_CHUNK = 1 << 16
"""Elements reduced at a time on the CPU, in two float64 buffers kept per thread (1 MiB): fresh
buffers of the whole output cost more than the reduction itself (the allocator returns large
blocks to the system and page-faults them back), and chunks of this size stay in cache."""
FOLD = 64
"""Parts an accumulator keeps before pooling them into one (on their device, no wait)."""
MEASURES = ("m4", "range", "zeros")
"""What a part may leave out (NaN): ``m3, m4``; ``min, max``; ``zeros``. ``count, mean, m2``
are always measured."""

_scratch = threading.local()


def _cpu_buffers(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This thread's two float64 CPU buffers of at least ``size`` elements (plain tensors, so
    usable in and out of inference mode)."""
    buffers: tuple[torch.Tensor, torch.Tensor] | None = getattr(_scratch, "buffers", None)
    if buffers is None or buffers[0].numel() < size:
        with torch.inference_mode(False):
            make = [torch.empty(size, dtype=torch.float64, device="cpu") for _ in range(2)]
        buffers = _scratch.buffers = (make[0], make[1])
    return buffers


def _chunk_moments(
    x: torch.Tensor, d: torch.Tensor, d2: torch.Tensor | None, measure: Collection[str]
) -> torch.Tensor:
    """The part of a flat, non-empty chunk: two passes over its float64 copy ``d`` (``d2``
    receives ``d**2`` when ``"m4"`` is measured; both of ``x``'s size)."""
    count = torch.full((), float(x.numel()), dtype=torch.float64, device=x.device)
    skipped = any(group not in measure for group in MEASURES)
    nan = count.new_full((), math.nan) if skipped else count  # count: a placeholder, replaced
    low, high, zeros = nan, nan, nan
    if "range" in measure:
        low, high = (v.to(torch.float64) for v in torch.aminmax(x))
    if "zeros" in measure:
        zeros = count - torch.count_nonzero(x)
    d.copy_(x)  # a copy even when x is float64: it is shifted in place
    mean = d.mean()
    d.sub_(mean)
    if d2 is None:
        m2, m3, m4 = torch.dot(d, d), nan, nan
    else:
        torch.mul(d, d, out=d2)
        m2, m3, m4 = d2.sum(), torch.dot(d2, d), torch.dot(d2, d2)
    return torch.stack([count, mean, m2, m3, m4, low, high, zeros])


def tensor_moments(tensor: torch.Tensor, measure: Collection[str] = MEASURES) -> torch.Tensor:
    """The part ``(count, mean, m2, m3, m4, min, max, zeros)`` of a non-empty real tensor, as a
    float64 tensor of 8 on the tensor's device (nothing is read back to the host). ``count``,
    ``mean`` and ``m2`` are always measured, the groups of :data:`MEASURES` when named in
    ``measure`` (NaN otherwise).

    Example:
        >>> tensor_moments(torch.tensor([[1.0, -1.0]])).tolist()
        [2.0, 0.0, 2.0, 0.0, 2.0, -1.0, 1.0, 0.0]
        >>> tensor_moments(torch.tensor([[1.0, -1.0]]), measure=()).tolist()[:4]
        [2.0, 0.0, 2.0, nan]
    """
    flat = tensor.detach().reshape(-1)
    on_cpu = flat.device.type == "cpu"
    step = CPU_CHUNK if on_cpu else CHUNK
    squares = "m4" in measure
    parts = []
    for start in range(0, flat.numel(), step):
        chunk = flat[start : start + step]
        n = chunk.numel()
        d2: torch.Tensor | None
        if on_cpu:
            d, d2 = (b[:n] for b in _cpu_buffers(step))
        else:
            d = torch.empty_like(chunk, dtype=torch.float64)
            d2 = torch.empty_like(d) if squares else None
        parts.append(_chunk_moments(chunk, d, d2 if squares else None, measure))
    return parts[0] if len(parts) == 1 else pool_moments(torch.stack(parts))


def pool_moments(parts: torch.Tensor) -> torch.Tensor:
    """Pool parts ``(k, 8)`` (each with ``count > 0``) into one part ``(8,)``, on their device.

    Example:
        >>> a, b = tensor_moments(torch.tensor([0.0, 2.0])), tensor_moments(torch.tensor([4.0]))
        >>> pool_moments(torch.stack([a, b])).tolist() == tensor_moments(
        ...     torch.tensor([0.0, 2.0, 4.0])).tolist()
        True
    """
    n, means, m2, m3 = parts[:, 0], parts[:, 1], parts[:, 2], parts[:, 3]
    total = n.sum()
    mean = (n * means).sum() / total
    delta = means - mean
    delta2 = delta * delta
    return torch.stack(
        [
            total,
            mean,
            (m2 + n * delta2).sum(),
            (m3 + 3 * delta * m2 + n * delta2 * delta).sum(),
            (parts[:, 4] + 4 * delta * m3 + 6 * delta2 * m2 + n * delta2 * delta2).sum(),
            parts[:, 5].min(),
            parts[:, 6].max(),
            parts[:, 7].sum(),
        ]
    )


@dataclass(frozen=True, slots=True)
class Moments:
    """The pooled statistics of every element seen, read back as Python floats.

    Attributes:
        count: elements seen.
        mean: their mean.
        m2, m3, m4: central sums ``sum((x - mean)**p)``.
        min, max: the extremes.
        zeros: elements equal to 0 (``-0.0`` included).

    A field its part did not measure (:data:`MEASURES`) is NaN, ``zeros`` None.
    """

    count: int
    mean: float
    m2: float
    m3: float
    m4: float
    min: float
    max: float
    zeros: int | None

    @classmethod
    def of(cls, part: torch.Tensor) -> Moments:
        """Read a part back (one transfer from its device)."""
        return cls.from_row(part.tolist())

    @classmethod
    def from_row(cls, row: list[float]) -> Moments:
        """The eight numbers of a part, in :data:`FIELDS` order, as read back."""
        count, mean, m2, m3, m4, low, high, zeros = row
        return cls(int(count), mean, m2, m3, m4, low, high, None if zeros != zeros else int(zeros))

    @classmethod
    def empty(cls) -> Moments:
        """Nothing seen: ``count == 0``, every moment NaN."""
        return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0)

    @classmethod
    def pooled(cls, parts: Iterable[Moments]) -> Moments:
        """Pool several results into one (the same formulas as :func:`pool_moments`).

        Example:
            >>> a = Moments.of(tensor_moments(torch.tensor([1.0, 3.0])))
            >>> Moments.pooled([a, a]).variance
            1.0
        """
        rows = [[_number(getattr(m, f)) for f in FIELDS] for m in parts if m.count]
        if not rows:
            return cls.empty()
        return cls.of(pool_moments(torch.tensor(rows, dtype=torch.float64)))

    @property
    def finite(self) -> bool:
        """False when a NaN or Inf was among the elements (every moment is then undefined), or
        a power overflowed."""
        return math.isfinite(self.mean) and math.isfinite(self.m2) and not math.isinf(self.m4)

    @property
    def variance(self) -> float:
        """Population variance ``m2 / count`` (no Bessel correction)."""
        return self.m2 / self.count

    @property
    def absmax(self) -> float:
        """The largest absolute value."""
        return max(-self.min, self.max)


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def read_parts(parts: Sequence[torch.Tensor | None]) -> list[Moments]:
    """Read parts back as :class:`Moments` (``None``: nothing seen), with one transfer per
    device rather than one per part. On CUDA the reading thread waits for the device (never a
    forward's thread: streaming never reads back).

    Example:
        >>> [m.count for m in read_parts([tensor_moments(torch.ones(3)), None])]
        [3, 0]
    """
    rows: dict[int, list[float]] = {}
    by_device: dict[torch.device, dict[int, torch.Tensor]] = {}
    for i, part in enumerate(parts):
        if part is not None:
            by_device.setdefault(part.device, {})[i] = part
    for device, found in by_device.items():
        if device.type == "cuda":  # parts made on other threads' streams are complete
            torch.cuda.synchronize(device)
        with torch.no_grad():
            values = torch.stack(list(found.values())).tolist()
        rows.update(zip(found, values, strict=True))
    return [Moments.from_row(rows[i]) if i in rows else Moments.empty() for i in range(len(parts))]


class MomentAccumulator:
    """Running :class:`Moments` of a stream of tensors; thread-safe; keeps no tensor it sees.

    Example:
        >>> acc = MomentAccumulator()
        >>> for batch in (torch.ones(3), torch.zeros(1)):
        ...     acc.add(batch)
        >>> acc.result().mean, acc.result().zeros
        (0.75, 1)
    """

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def add(self, tensor: torch.Tensor) -> None:
        """Fold in every element of a real tensor (an empty one changes nothing)."""
        if tensor.numel() == 0:
            return
        self.add_part(tensor_moments(tensor))

    def add_part(self, part: torch.Tensor) -> None:
        """Fold in a part made by :func:`tensor_moments` (``count > 0``)."""
        with self._lock:
            self._parts.append(part)
            if len(self._parts) >= FOLD:
                self._parts = [_pooled(self._parts)]

    def part(self) -> torch.Tensor | None:
        """The pooled part of everything added so far, on its device (None when nothing was).
        Pooling runs outside the lock: adding never waits for it."""
        with self._lock:
            parts = list(self._parts)
        if len(parts) <= 1:
            return parts[0] if parts else None
        pooled = _pooled(parts)
        with self._lock:  # keep the work unless a fold replaced those parts meanwhile
            head = self._parts[: len(parts)]
            if len(head) == len(parts) and all(a is b for a, b in zip(head, parts, strict=True)):
                self._parts[: len(parts)] = [pooled]
        return pooled

    def result(self) -> Moments:
        """Everything added so far (``count == 0`` when nothing was)."""
        part = self.part()
        return Moments.empty() if part is None else Moments.of(part)

    def reset(self) -> None:
        """Forget everything added."""
        with self._lock:
            self._parts = []


def _pooled(parts: list[torch.Tensor]) -> torch.Tensor:
    device = parts[0].device
    with torch.no_grad():
        return pool_moments(torch.stack([p.to(device) for p in parts]))
