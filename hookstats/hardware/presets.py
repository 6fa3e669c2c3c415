"""Hardware presets for :func:`hookstats.summarize_hardware` (its ``hardware=`` argument): peak
memory bandwidth and peak dense throughput per precision, and the precisions hookstats knows.

Published numbers (dense, i.e. *without* 2:4 structured sparsity; vendors often quote the
sparse figure, twice as large):

* ``"a100"`` -- NVIDIA A100 SXM4 80GB. Source: NVIDIA A100 Tensor Core GPU datasheet
  (nvidia.com, "NVIDIA A100 | Tensor Core GPU", 2021): 2,039 GB/s HBM2e (the 40GB part has
  1,555 GB/s), FP32 19.5 TFLOPS, TF32 156, BF16/FP16 312, INT8 624 TOPS, INT4 1,248 TOPS.
* ``"h100"`` -- NVIDIA H100 SXM5 80GB. Source: NVIDIA H100 Tensor Core GPU datasheet
  (nvidia.com, 2022-2023): 3,350 GB/s HBM3, FP32 67 TFLOPS, TF32 494.7, BF16/FP16 989.4,
  FP8 1,978.9, INT8 1,978.9 TOPS (the datasheet's 989/1,979/3,958 figures are with sparsity).
  Hopper tensor cores have no INT4 mode, so none is listed.
* ``"rtx4090"`` -- NVIDIA GeForce RTX 4090. Source: NVIDIA Ada Lovelace GPU architecture
  whitepaper (v1.0, 2022), appendix table: 1,008 GB/s GDDR6X, FP32 82.6 TFLOPS, TF32 82.6,
  BF16/FP16 165.2 (with FP32 accumulate, as PyTorch uses), INT8 660.6 TOPS, INT4 1,321.2 TOPS.
* ``"cpu"`` -- *this* machine, measured once per process by :func:`measure_cpu`: bandwidth from
  a short tensor copy (bytes read + written / time), fp32 peak from a short matmul. Expect
  figures below the hardware's peak: it is one thread pool and one process, on a possibly
  shared machine.

May import: torch and :mod:`hookstats.errors`.

Example:
    >>> hardware_spec("A100").memory_bandwidth_gbps
    2039.0
    >>> hardware_spec("h100").peak("bf16")
    989.4
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..errors import InputSpecError

__all__ = [
    "HARDWARE_PRESETS",
    "PRECISION_BITS",
    "HardwareSpec",
    "canonical_precision",
    "hardware_spec",
    "measure_cpu",
]

PRECISION_BITS: dict[str, int] = {
    "fp32": 32,
    "tf32": 32,
    "bf16": 16,
    "fp16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}
_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
}


def canonical_precision(name: str | torch.dtype) -> str:
    """``"bfloat16"``, ``torch.bfloat16`` or ``"bf16"`` -> ``"bf16"``.

    Raises:
        InputSpecError: an unknown precision; the message lists the known ones.
    """
    if not isinstance(name, str | torch.dtype):
        raise InputSpecError(
            f"a precision is a name such as 'bf16' or a torch dtype, got {type(name).__name__} "
            f"{name!r}."
        )
    key = str(name).replace("torch.", "").lower()
    key = _ALIASES.get(key, key)
    if key not in PRECISION_BITS:
        raise InputSpecError(
            f"unknown precision {name!r}; use one of {', '.join(PRECISION_BITS)} "
            "(or a torch dtype such as torch.bfloat16)."
        )
    return key


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Peak figures of one accelerator or CPU (a ``hardware=`` preset).

    Attributes:
        name: display name.
        memory_bandwidth_gbps: peak memory bandwidth in GB/s (1 GB = 1e9 bytes).
        peak_tflops: dense peak in TFLOPS (TOPS for integers) per precision name.
        source: where the numbers come from.
    """

    name: str
    memory_bandwidth_gbps: float
    peak_tflops: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    def peak(self, precision: str) -> float | None:
        """Dense peak TFLOPS at ``precision``, or None when the device has no such mode."""
        return self.peak_tflops.get(canonical_precision(precision))


HARDWARE_PRESETS: dict[str, HardwareSpec] = {
    "a100": HardwareSpec(
        "A100 SXM4 80GB",
        2039.0,
        {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0, "int4": 1248.0},
        "NVIDIA A100 Tensor Core GPU datasheet (dense figures)",
    ),
    "h100": HardwareSpec(
        "H100 SXM5 80GB",
        3350.0,
        {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        "NVIDIA H100 Tensor Core GPU datasheet (sparse figures halved)",
    ),
    "rtx4090": HardwareSpec(
        "GeForce RTX 4090",
        1008.0,
        {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "int8": 660.6, "int4": 1321.2},
        "NVIDIA Ada Lovelace architecture whitepaper, appendix (dense, FP32 accumulate)",
    ),
}
_HARDWARE_ALIASES = {
    "a100-80gb": "a100",
    "h100-sxm": "h100",
    "4090": "rtx4090",
    "rtx-4090": "rtx4090",
    "geforce rtx 4090": "rtx4090",
}


def _best_seconds(work: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=4)
def measure_cpu(copy_mib: int = 64, matmul_size: int = 512, repeats: int = 5) -> HardwareSpec:
    """Measure this CPU: copy bandwidth and fp32 matmul throughput (cached per process).

    Bandwidth = 2 x ``copy_mib`` MiB (read + write) / best copy time; peak fp32 =
    2 x n^3 FLOPs / best time of an n x n matmul. It takes a fraction of a second.

    Example:
        >>> measure_cpu(copy_mib=1, matmul_size=32, repeats=1).memory_bandwidth_gbps > 0
        True
    """
    for label, value in (
        ("copy_mib", copy_mib),
        ("matmul_size", matmul_size),
        ("repeats", repeats),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputSpecError(f"measure_cpu({label}=...) must be an int >= 1, got {value!r}.")
    elements = copy_mib * 2**20 // 4
    source, target = torch.ones(elements), torch.empty(elements)
    copy_s = _best_seconds(lambda: target.copy_(source), repeats)
    a = torch.randn(matmul_size, matmul_size)
    mm_s = _best_seconds(lambda: a @ a, repeats)
    return HardwareSpec(
        "this CPU (measured)",
        round(2 * source.nbytes / copy_s / 1e9, 2),
        {"fp32": round(2 * matmul_size**3 / mm_s / 1e12, 4)},
        f"measured: {copy_mib} MiB tensor copy and a {matmul_size}x{matmul_size} fp32 matmul, "
        f"best of {repeats}, {torch.get_num_threads()} threads",
    )


def hardware_spec(name: str | HardwareSpec) -> HardwareSpec:
    """The preset called ``name`` (case-insensitive: ``"A100"``, ``"h100"``, ``"rtx4090"``,
    ``"cpu"``), or ``name`` itself when it is already a :class:`HardwareSpec`.

    Raises:
        InputSpecError: an unknown name; the message lists the presets.
    """
    if isinstance(name, HardwareSpec):
        return name
    if not isinstance(name, str):
        raise InputSpecError(
            f"hardware must be a preset name ({', '.join([*HARDWARE_PRESETS, 'cpu'])}) or a "
            f"HardwareSpec, got {type(name).__name__} {name!r}."
        )
    key = name.strip().lower()
    key = _HARDWARE_ALIASES.get(key, key)
    if key == "cpu":
        return measure_cpu()
    if key not in HARDWARE_PRESETS:
        raise InputSpecError(
            f"unknown hardware {name!r}; presets are {', '.join([*HARDWARE_PRESETS, 'cpu'])}. "
            "For another device pass memory_bandwidth_gbps= and peak_tflops= "
            "(or a HardwareSpec)."
        )
    return HARDWARE_PRESETS[key]
