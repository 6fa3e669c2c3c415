"""Safe checkpoint loading: find checkpoint files, read them without running code, load them.

A checkpoint can never run code here. ``.pt``/``.pth``/``.bin``/``.ckpt`` files are read with
``torch.load(path, weights_only=True, map_location="cpu")``, whose unpickler only rebuilds
tensors and plain containers; a pickle that names any other global (a malicious ``__reduce__``,
a custom class, a numpy scalar) is refused with :class:`~hookstats.errors.UnsafeCheckpointError`
before anything it names is imported or called. Globals you trust can be allowed one by one
(``safe_globals=[MyConfig]``, torch's allowlist). ``.safetensors`` files hold no code at all
(extra ``hookstats[safetensors]``). A Hugging Face sharded checkpoint (``*.index.json`` and its
shards, :mod:`hookstats.runs.shards`) is one checkpoint.

Layouts understood: a plain ``state_dict``; a dict holding one under ``"model"``,
``"state_dict"`` (Lightning ``.ckpt``, whose other entries -- ``hyper_parameters``, optimizer
states -- are ignored) or ``"model_state_dict"``, next to a ``"step"`` or ``"global_step"``.
:func:`load_into` removes a key prefix that the model lacks -- ``module.`` (DDP),
``_orig_mod.`` (``torch.compile``), ``model.`` (a Lightning module's attribute), stacked too.
The step: see :mod:`hookstats.runs.steps`.

Reading one file safely is :mod:`hookstats.runs.readers`' job; this module finds checkpoints,
loads one (a file or a sharded checkpoint) with its step, and loads it into a model.

May import: torch, the standard library, :mod:`hookstats.errors` and the :mod:`hookstats.runs`
modules :mod:`.readers`, :mod:`.steps` and :mod:`.shards`.

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
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from .readers import SafeGlobals, read_file
from .shards import INDEX_SUFFIX, group_shards, is_index, read_sharded
from .steps import CheckpointStepWarning, name_step, step_from_name

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointStepWarning",
    "LoadedCheckpoint",
    "SafeGlobals",
    "find_checkpoints",
    "holds_weights",
    "load_checkpoint",
    "load_into",
    "step_from_name",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
# Files training frameworks save beside the weights that hold no model weights (Hugging Face
# Trainer: optimizer, LR scheduler, grad scaler, RNG states, its arguments). Folder listings
# and globs leave them out; naming one explicitly still loads it.
_NOT_WEIGHTS = re.compile(
    r"^(optimizer|scheduler|scaler|training_args|rng_state(_\d+)?)\.(pt|pth|bin)$"
)


def holds_weights(path: Path) -> bool:
    """Whether a listed file may hold model weights (not an optimizer or RNG state...).

    >>> holds_weights(Path("checkpoint-8/optimizer.pt")), holds_weights(Path("step_8.pt"))
    (False, True)
    """
    return _NOT_WEIGHTS.match(path.name) is None


_PREFIXES = ("module.", "_orig_mod.", "model.")  # DDP, torch.compile, a Lightning attribute

CheckpointsSpec = str | PathLike[str] | Sequence[str | PathLike[str]]


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    """A checkpoint read from disk: its tensors, its step (``None`` when it has none), and
    notes about an ambiguous step (also issued as :class:`CheckpointStepWarning`)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    step: int | None
    notes: tuple[str, ...] = field(default=())


def _sort_key(path: Path) -> tuple[float, str]:
    step = step_from_name(path)
    return (float("inf") if step is None else step, str(path))


def _candidates(folder: Path) -> list[Path]:
    """A folder's checkpoint files and shard indexes, or those of its sub-folders when it has
    none itself (a Hugging Face Trainer's ``checkpoint-N/`` folders)."""

    def listed(where: Path) -> list[Path]:
        try:
            entries = list(where.iterdir())
        except OSError:
            return []
        return [
            p
            for p in entries
            if (p.suffix in CHECKPOINT_SUFFIXES and holds_weights(p)) or is_index(p)
        ]

    found = listed(folder)
    if not found:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            found += listed(sub)
    return group_shards(found)


def _expand(entry: str | PathLike[str]) -> list[Path]:
    if not isinstance(entry, str | PathLike) or isinstance(entry, bytes):
        raise CheckpointError(
            f"a checkpoint must be a path, a folder or a glob (str or pathlib.Path), got "
            f"{type(entry).__name__} {entry!r}."
        )
    text = os.fspath(entry)
    if not text.strip():
        raise CheckpointError("an empty checkpoint path: name a file, a folder or a glob.")
    if glob.has_magic(text):
        matched = [Path(p) for p in glob.glob(text, recursive=True)]
        found = group_shards(
            [p for p in matched if (p.is_file() or p.is_symlink()) and holds_weights(p)]
        )
        if not found:
            raise CheckpointError(
                f"the glob {text!r} matches no checkpoint file. Check the folder and the pattern "
                "(quote it in a shell so that hookstats, not the shell, expands it)."
            )
        return sorted(found, key=_sort_key)
    path = Path(text)
    if path.is_dir():
        found = _candidates(path)
        if not found:
            raise CheckpointError(
                f"the folder {text!r} holds no checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)}"
                f" or a sharded *{INDEX_SUFFIX}). Pass the files, or a glob such as 'ckpts/*.pt'."
            )
        return sorted(found, key=_sort_key)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {text!r}. Check the path.")
    return [path]


def _absolute(path: Path) -> Path:
    """The resolved path, or the absolute one when it cannot be resolved (a symlink loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def find_checkpoints(checkpoints: CheckpointsSpec) -> list[Path]:
    """Resolve a glob, a folder, a file, or a list of those into checkpoint paths.

    Globs and folders are sorted by the step in each name (then by name); an explicit list
    keeps its order. A path named twice is kept once. The shards of a sharded checkpoint are
    one entry, its ``*.index.json``. A file inside a folder or glob that cannot be read (a
    symlink loop, no permission) is kept: loading it fails for that checkpoint alone.

    Raises:
        CheckpointError: a glob or folder matches nothing, a listed file does not exist, or an
            entry is not a path.

    Example:
        >>> find_checkpoints("runs/ckpts/*.pt")  # doctest: +SKIP
        [PosixPath('runs/ckpts/step_100.pt'), PosixPath('runs/ckpts/step_200.pt')]
    """
    single = isinstance(checkpoints, str | PathLike) or not isinstance(checkpoints, Iterable)
    entries: list[Any] = [checkpoints] if single else list(checkpoints)  # type: ignore[arg-type]
    if not entries:
        raise CheckpointError("no checkpoints given: pass a list of paths, a folder or a glob.")
    seen: set[Path] = set()
    paths = []
    for entry in entries:
        for path in _expand(entry):
            if _absolute(path) not in seen:
                seen.add(_absolute(path))
                paths.append(path)
    return paths


def load_checkpoint(
    path: str | PathLike[str], *, safe_globals: SafeGlobals = None
) -> LoadedCheckpoint:
    """Read a checkpoint without running code; the step from the file, else from its name.

    Args:
        path: a ``.pt/.pth/.bin/.ckpt/.safetensors`` file, or a sharded checkpoint's
            ``*.index.json``.
        safe_globals: globals you trust that the file's pickle needs (e.g. a Lightning
            ``AttributeDict`` in ``hyper_parameters``); everything else stays refused.

    Raises:
        UnsafeCheckpointError: the pickle needs code to load (the message says how to convert,
            or which global to allow).
        CheckpointError: missing, empty, corrupt or truncated file, an unknown layout, or a
            stored step that is not a 64-bit integer.

    Example:
        >>> ckpt = load_checkpoint("ckpts/step_100.pt")  # doctest: +SKIP
        >>> ckpt.step  # doctest: +SKIP
        100
    """
    if not isinstance(path, str | PathLike) or isinstance(path, bytes):
        raise CheckpointError(f"path must be a str or pathlib.Path, got {type(path).__name__}.")
    path = Path(path)
    try:
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: '{path}'. Check the path.")
        if is_index(path):
            state, stored = read_sharded(path, lambda p: read_file(p, safe_globals)), None
        else:
            state, stored = read_file(path, safe_globals)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}.") from None
    named, note = name_step(path)
    notes = [note] if note and stored is None else []
    if stored is not None and named is not None and stored != named:
        notes.append(
            f"{path.name} stores step {stored} but its name says {named}; {stored} is used"
        )
    for text in notes:
        warnings.warn(CheckpointStepWarning(text), stacklevel=2)
    step = stored if stored is not None else named
    return LoadedCheckpoint(path=path, state_dict=state, step=step, notes=tuple(notes))


def _strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with the key prefix the model lacks removed: the dotted prefix under which the
    keys are exactly the model's (other keys, e.g. a Lightning module's loss, are left out);
    else known prefixes (DDP, compile, Lightning) shared by every key, stacked."""
    if set(state) == expected or not state:
        return state
    first = next(iter(state)).split(".")
    for depth in range(1, min(len(first), 5)):
        prefix = ".".join(first[:depth]) + "."
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(inner) == expected:
            return inner
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(
                k.startswith(prefix) for k in expected
            ):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
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
