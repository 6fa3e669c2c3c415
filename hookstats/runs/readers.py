"""Reading one checkpoint file without running code: ``torch.load(weights_only=True)`` with an
optional allowlist of trusted globals, or safetensors; the state_dict layouts and the step stored
beside it.

A pickle the weights-only unpickler refuses is told apart from random bytes by parsing it with
:mod:`pickletools` as a stream (never executed, never read whole: refusing a 1 GiB legacy pickle
costs no more memory than torch's own refusal), and the error names the global it needs and how
to allow or convert it.

May import: torch, the standard library, :mod:`hookstats.errors` and
:mod:`hookstats.runs.steps` (safetensors lazily).
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, UnsafeCheckpointError
from .steps import as_step

__all__ = ["SafeGlobals", "check_safe_globals", "read_file"]

_STATE_KEYS = ("model", "state_dict", "model_state_dict")
_STEP_KEYS = ("step", "global_step")
_CONVERT_HINT = (
    "If you trust the file, allow the globals it needs (load_checkpoint(path, "
    "safe_globals=[...]), sweep(..., safe_globals=[...]) or --safe-globals module:Name), or "
    "convert it once in a trusted environment: load it with torch.load(path, "
    "weights_only=False) and re-save a plain state_dict (torch.save(model.state_dict(), path), "
    "optionally with {'model': state_dict, 'step': n}) or a .safetensors file "
    "(safetensors.torch.save_file)."
)

SafeGlobals = Sequence[Any] | None
"""Globals a ``weights_only`` unpickler may rebuild besides tensors: classes or functions, or
``(object, "module.Name")`` pairs (torch's ``safe_globals`` format)."""


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise CheckpointError(
            f"{path} is a .safetensors file and the safetensors package is missing: "
            "pip install hookstats[safetensors]"
        ) from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            metadata = handle.metadata() or {}
    except Exception as exc:  # SafetensorError has no importable base class
        raise CheckpointError(
            f"{path} is corrupt or not a safetensors file ({exc}). Re-save it, or leave it out."
        ) from None
    return tensors, as_step(metadata.get("step"), f"{path} (metadata)")


def _is_pickle(path: Path) -> bool:
    """Whether the file's (first) pickle is well-formed: parsed by :mod:`pickletools` from the
    file as a stream, never executed and never read whole (a refused 1 GiB file costs no
    memory). Tells a refused pickle from random bytes."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                with archive.open(name) as stream:
                    for _ in pickletools.genops(stream):
                        pass
        else:
            with open(path, "rb") as stream:
                for _ in pickletools.genops(stream):
                    pass
    except Exception:
        return False
    return True


def check_safe_globals(safe_globals: SafeGlobals) -> list[Any]:
    """``safe_globals`` as a list, after checking it holds objects (not names).

    Raises:
        CheckpointError: not a list, or an entry that is a string or not callable.
    """
    if safe_globals is None:
        return []
    if isinstance(safe_globals, str) or not isinstance(safe_globals, Sequence):
        raise CheckpointError(
            f"safe_globals must be a list of classes or functions you trust, got "
            f"{safe_globals!r}. Example: safe_globals=[MyConfig]."
        )
    for item in safe_globals:
        if isinstance(item, str) or not (callable(item) or isinstance(item, tuple)):
            raise CheckpointError(
                f"safe_globals entries must be the trusted objects themselves (a class or "
                f"function, or an (object, 'module.Name') pair), got {item!r}."
            )
    return list(safe_globals)


def _read_torch(path: Path, safe_globals: SafeGlobals = None) -> Any:
    try:
        with torch.serialization.safe_globals(check_safe_globals(safe_globals)):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc) or not _is_pickle(path):
            raise CheckpointError(
                f"{path} is corrupt, truncated or not a PyTorch checkpoint (the weights-only "
                "unpickler cannot read it). Re-save it, or leave it out of the sweep."
            ) from None
        found = re.search(r"GLOBAL (\S+)", str(exc)) or re.search(r"global (\S+)", str(exc))
        reason = re.search(r"WeightsUnpickler error:\s*([^\n]+(?:\n[^\n]+)?)", str(exc))
        detail = f" ({' '.join(reason.group(1).split())})" if reason else ""
        what = f"the pickle global {found.group(1)}" if found else f"a pickle instruction{detail}"
        raise UnsafeCheckpointError(
            f"refused to load {path}: it needs {what}, which could run arbitrary code, and "
            f"hookstats loads with weights_only=True so that a checkpoint can never run code. "
            f"{_CONVERT_HINT}"
        ) from None
    except CheckpointError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {first[:200]}). Re-save it, or leave it out of the sweep."
        ) from None


def _is_state_dict(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _unpack(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                step_key = next((k for k in _STEP_KEYS if k in obj), None)
                where = f"{path} ({step_key!r})"
                return dict(obj[key]), as_step(obj[step_key], where) if step_key else None
        described = f"a dict with keys {sorted(map(str, obj))[:8]}"
    else:
        described = f"a {type(obj).__name__}"
    raise CheckpointError(
        f"{path} holds {described}, not a state_dict. Save model.state_dict(), or "
        "{'model': model.state_dict(), 'step': n}."
    )


def read_file(path: Path, safe_globals: SafeGlobals) -> tuple[dict[str, torch.Tensor], int | None]:
    """One file's tensors and stored step (None when it stores none).

    Raises:
        UnsafeCheckpointError: the pickle needs a global that is not allowed.
        CheckpointError: an empty, corrupt or truncated file, an unknown layout, a bad step.
    """
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): its save was probably interrupted. Re-save it, or "
            "leave it out."
        )
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _unpack(path, _read_torch(path, safe_globals))
