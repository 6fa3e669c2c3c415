"""Safe checkpoint loading: find checkpoint files, read them without running code, load them.

A checkpoint can never run code here. ``.pt``/``.pth``/``.bin``/``.ckpt`` files are read with
``torch.load(path, weights_only=True, map_location="cpu")``, whose unpickler only rebuilds
tensors and plain containers; a pickle that names any other global (a malicious ``__reduce__``,
a custom class, a numpy scalar) is refused with :class:`~hookstats.errors.UnsafeCheckpointError`
before anything it names is imported or called. ``.safetensors`` files hold no code at all
(extra ``hookstats[safetensors]``).

Two layouts are understood: a plain ``state_dict`` and a dict holding one under ``"model"``
(or ``"state_dict"``/``"model_state_dict"``) next to a ``"step"`` (or ``"global_step"``). The step
comes from the file when it has one, otherwise from the last number in the file name
(``step_1200.pt``; for ``checkpoint-1200/pytorch_model.bin``, the folder's name).

May import: torch, the standard library and :mod:`hookstats.errors` (safetensors lazily).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "step_40.pt"
    >>> torch.save({"weight": torch.ones(2)}, path)
    >>> ckpt = load_checkpoint(path)
    >>> ckpt.step, list(ckpt.state_dict)
    (40, ['weight'])
"""

from __future__ import annotations

import glob
import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LoadedCheckpoint",
    "find_checkpoints",
    "load_checkpoint",
    "load_into",
    "step_from_name",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_STATE_KEYS = ("model", "state_dict", "model_state_dict")
_STEP_KEYS = ("step", "global_step")
_STEP_FOLDER = re.compile(
    r"(?:checkpoint|ckpt|step|global_step|iter|iteration)[-_]?(\d+)", re.IGNORECASE
)
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_CONVERT_HINT = (
    "If you trust the file, convert it once in a trusted environment: load it with "
    "torch.load(path, weights_only=False) and re-save a plain state_dict "
    "(torch.save(model.state_dict(), path), optionally with {'model': state_dict, 'step': n}) "
    "or a .safetensors file (safetensors.torch.save_file)."
)

CheckpointsSpec = str | PathLike[str] | Sequence[str | PathLike[str]]


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    """A checkpoint read from disk: its tensors and its step (``None`` when it has none)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    step: int | None


def step_from_name(path: str | PathLike[str]) -> int | None:
    """The last number in the file name; else the number of a ``checkpoint-N``/``step_N``
    folder (the Hugging Face Trainer layout); else ``None``.

    Example:
        >>> step_from_name("runs/ckpt_epoch2_step001500.pt"), step_from_name("run7/final.pt")
        (1500, None)
        >>> step_from_name("out/checkpoint-800/pytorch_model.bin")
        800
    """
    path = Path(path)
    numbers = re.findall(r"\d+", path.stem)
    if numbers:
        return int(numbers[-1])
    folder = _STEP_FOLDER.fullmatch(path.parent.name)
    return int(folder.group(1)) if folder else None


def _sort_key(path: Path) -> tuple[float, str]:
    step = step_from_name(path)
    return (float("inf") if step is None else step, str(path))


def _expand(entry: str | PathLike[str]) -> list[Path]:
    text = str(entry)
    if glob.has_magic(text):
        found = sorted(
            (Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()), key=_sort_key
        )
        if not found:
            raise CheckpointError(
                f"the glob {text!r} matches no checkpoint file. Check the folder and the pattern "
                "(quote it in a shell so that hookstats, not the shell, expands it)."
            )
        return found
    path = Path(text)
    if path.is_dir():
        found = sorted(
            (p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES), key=_sort_key
        )
        if not found:
            raise CheckpointError(
                f"the folder {text!r} holds no checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})."
                " Pass the files, or a glob such as 'ckpts/*.pt'."
            )
        return found
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {text!r}. Check the path.")
    return [path]


def find_checkpoints(checkpoints: CheckpointsSpec) -> list[Path]:
    """Resolve a glob, a folder, a file, or a list of those into checkpoint paths.

    Globs and folders are sorted by the step in each name (then by name); an explicit list
    keeps its order. A path named twice is kept once.

    Raises:
        CheckpointError: a glob or folder matches nothing, or a listed file does not exist.

    Example:
        >>> find_checkpoints("runs/ckpts/*.pt")  # doctest: +SKIP
        [PosixPath('runs/ckpts/step_100.pt'), PosixPath('runs/ckpts/step_200.pt')]
    """
    entries = [checkpoints] if isinstance(checkpoints, str | PathLike) else list(checkpoints)
    if not entries:
        raise CheckpointError("no checkpoints given: pass a list of paths, a folder or a glob.")
    seen: set[Path] = set()
    paths = []
    for entry in entries:
        for path in _expand(entry):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    return paths


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
    step = metadata.get("step")
    return tensors, int(step) if step is not None and str(step).isdigit() else None


def _is_pickle(path: Path) -> bool:
    """Whether the file's pickle (``data.pkl`` in a torch zip) is well-formed: parsed by
    :mod:`pickletools`, never executed. Tells a refused pickle from random bytes."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            data = path.read_bytes()
        for _ in pickletools.genops(data):
            pass
    except Exception:
        return False
    return True


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc) or not _is_pickle(path):
            raise CheckpointError(
                f"{path} is corrupt, truncated or not a PyTorch checkpoint (the weights-only "
                "unpickler cannot read it). Re-save it, or leave it out of the sweep."
            ) from None
        found = re.search(r"GLOBAL (\S+)", str(exc)) or re.search(r"global (\S+)", str(exc))
        what = f"the pickle global {found.group(1)}" if found else "a pickle instruction"
        raise UnsafeCheckpointError(
            f"refused to load {path}: it needs {what}, which could run arbitrary code, and "
            f"hookstats loads with weights_only=True so that a checkpoint can never run code. "
            f"{_CONVERT_HINT}"
        ) from None
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


def _as_step(value: object) -> int | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _unpack(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                step = next((_as_step(obj[k]) for k in _STEP_KEYS if k in obj), None)
                return dict(obj[key]), step
        described = f"a dict with keys {sorted(map(str, obj))[:8]}"
    else:
        described = f"a {type(obj).__name__}"
    raise CheckpointError(
        f"{path} holds {described}, not a state_dict. Save model.state_dict(), or "
        "{'model': model.state_dict(), 'step': n}."
    )


def load_checkpoint(path: str | PathLike[str]) -> LoadedCheckpoint:
    """Read a checkpoint without running code; the step from the file, else from its name.

    Raises:
        UnsafeCheckpointError: the pickle needs code to load (the message says how to convert).
        CheckpointError: missing, empty, corrupt or truncated file, or an unknown layout.

    Example:
        >>> ckpt = load_checkpoint("ckpts/step_100.pt")  # doctest: +SKIP
        >>> ckpt.step  # doctest: +SKIP
        100
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: '{path}'. Check the path.")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): its save was probably interrupted. Re-save it, or "
            "leave it out."
        )
    if path.suffix == ".safetensors":
        state, step = _read_safetensors(path)
    else:
        state, step = _unpack(path, _read_torch(path))
    return LoadedCheckpoint(
        path=path, state_dict=state, step=step if step is not None else step_from_name(path)
    )


def _strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state) and not any(
            k.startswith(prefix) for k in expected
        ):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")


def load_into(model: nn.Module, checkpoint: LoadedCheckpoint) -> None:
    """Load a checkpoint's tensors into ``model`` (strict: every key, every shape).

    A ``module.`` (DistributedDataParallel) or ``_orig_mod.`` (torch.compile) prefix on every
    key is removed first.

    Raises:
        CheckpointError: keys are missing or unexpected, or shapes differ; the message lists
            them and says that ``build_model()`` must build the checkpoint's architecture.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> load_into(model, LoadedCheckpoint(Path("x.pt"), model.state_dict(), 0))
    """
    expected = model.state_dict()
    state = _strip_prefix(checkpoint.state_dict, set(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label}: {_listed(names)}"
        for label, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", mismatched),
        )
        if names
    ]
    if problems:
        raise CheckpointError(
            f"{checkpoint.path} does not fit the model built by build_model() "
            f"({'; '.join(problems)}). build_model() must build the architecture the "
            "checkpoint was saved from."
        )
    model.load_state_dict(state, strict=True)
