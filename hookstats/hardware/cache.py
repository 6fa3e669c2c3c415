"""Last-level cache sizes, to say honestly why a layer moved bytes faster than the device's
DRAM peak: a working set that fits the cache was served from it; one that does not means the
byte model counted bytes that were never moved from DRAM.

Sizes: A100 40 MiB L2 (NVIDIA A100 Tensor Core GPU architecture whitepaper), H100 SXM5 50 MiB
L2 (NVIDIA H100 Tensor Core GPU architecture whitepaper), RTX 4090 72 MiB L2 (NVIDIA Ada
Lovelace architecture whitepaper); this CPU: the largest cache Linux lists under
``/sys/devices/system/cpu/cpu0/cache`` (None elsewhere).

May import: the standard library only.

Example:
    >>> last_level_cache_bytes("A100 SXM4 80GB") // 2**20
    40
    >>> cache_label(bytes_per_call=1e6, cache_bytes=40 * 2**20), cache_label(1e9, 40 * 2**20)
    ('cache', 'overcount')
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["CACHE_NOTES", "cache_label", "last_level_cache_bytes"]

_GPU_L2 = {
    "A100 SXM4 80GB": 40 * 2**20,
    "H100 SXM5 80GB": 50 * 2**20,
    "GeForce RTX 4090": 72 * 2**20,
}
_CPU = "this CPU (measured)"
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}

CACHE_NOTES = {
    "cache": "cache: achieved above the DRAM peak with a working set per call that fits the "
    "{cache} last-level cache · the bytes came from cache; the DRAM roofline does not bound it",
    "overcount": "overcount: achieved above the DRAM peak with a working set per call larger "
    "than the {cache} cache · the byte model counts bytes that were not moved (in-place or "
    "fused ops, weights read once for many calls)",
    "cache?": "cache?: achieved above the DRAM peak; the cache size is unknown · bytes from "
    "cache, or the byte model overcounts",
}


@functools.lru_cache(maxsize=1)
def _cpu_cache_bytes() -> int | None:
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = _UNITS.get(text[-1:].upper(), 1)
        digits = text.rstrip("KMGkmg")
        if digits.isdigit():
            size = int(digits) * unit
            best = size if best is None else max(best, size)
    return best


def last_level_cache_bytes(hardware: str | None) -> int | None:
    """The last-level cache of a preset (by its display name), or None when unknown."""
    if hardware in _GPU_L2:
        return _GPU_L2[hardware]
    if hardware == _CPU:
        return _cpu_cache_bytes()
    return None


def cache_label(bytes_per_call: float, cache_bytes: int | None) -> str:
    """Why a row beat the DRAM peak: ``"cache"``, ``"overcount"`` or ``"cache?"``."""
    if cache_bytes is None:
        return "cache?"
    return "cache" if bytes_per_call <= cache_bytes else "overcount"
