"""Hugging Face sharded checkpoints: ``model.safetensors.index.json`` or
``pytorch_model.bin.index.json`` and the shard files it lists, read as one checkpoint.

An index is JSON ``{"metadata": {...}, "weight_map": {tensor name: shard file name}}``. A shard
must be a plain file name in the index's folder (no folder part, no ``..``): an index cannot make
hookstats read a file elsewhere. Every shard is read as safely as a single checkpoint (by the
reader the caller passes), every tensor the index names must be in its shard, and no tensor may
come from two shards.

:func:`group_shards` replaces, in a list of files, the shards of an index in the same list by
the index itself (when a folder holds both a safetensors and a ``.bin`` index, the safetensors
one is kept).

May import: torch, the standard library and :mod:`hookstats.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import CheckpointError

__all__ = ["INDEX_SUFFIX", "group_shards", "is_index", "read_sharded", "shard_names"]

INDEX_SUFFIX = ".index.json"
ShardReader = Callable[[Path], tuple[dict[str, torch.Tensor], int | None]]


def is_index(path: Path) -> bool:
    """Whether ``path`` names a sharded checkpoint's index file."""
    return path.name.endswith(INDEX_SUFFIX)


def _weight_map(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{index} is not a readable sharded-checkpoint index ({type(exc).__name__}: {exc})."
        ) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index} has no 'weight_map' (tensor name -> shard file): it is not a Hugging Face "
            "sharded-checkpoint index."
        )
    for name, shard in weight_map.items():
        if not isinstance(name, str) or not isinstance(shard, str):
            raise CheckpointError(f"{index} maps {name!r} to {shard!r}: expected two strings.")
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(
                f"{index} names the shard {shard!r}, which is not a file of the index's own "
                "folder: refused (an index must not point elsewhere)."
            )
    return weight_map


def shard_names(index: Path) -> list[str]:
    """The shard file names an index lists, in order (each once)."""
    return list(dict.fromkeys(_weight_map(index).values()))


def read_sharded(index: Path, read: ShardReader) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint, each shard read by ``read``.

    Raises:
        CheckpointError: a malformed index, a missing shard, a tensor the index names that its
            shard lacks, or one tensor in two shards.
    """
    weight_map = _weight_map(index)
    state: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(weight_map.values()):
        path = index.parent / shard
        if not path.is_file():
            raise CheckpointError(
                f"{index} lists the shard {shard}, which is missing from {index.parent}. Copy "
                "every shard of the checkpoint."
            )
        tensors, _ = read(path)
        twice = sorted(set(tensors) & set(state))
        if twice:
            raise CheckpointError(f"{index}: {twice[0]!r} is in two shards.")
        state.update(tensors)
    missing = sorted(name for name in weight_map if name not in state)
    if missing:
        raise CheckpointError(
            f"{index} names tensors that its shards lack: {', '.join(missing[:5])}. A shard is "
            "truncated or from another save."
        )
    return state


def group_shards(paths: list[Path]) -> list[Path]:
    """``paths`` with the shards of each index among them replaced by that index."""
    indexes = [p for p in paths if is_index(p)]
    folders_with_safetensors = {
        p.parent for p in indexes if p.name.endswith(".safetensors" + INDEX_SUFFIX)
    }
    dropped: set[Path] = set()
    for index in indexes:
        if index.parent in folders_with_safetensors and not index.name.endswith(
            ".safetensors" + INDEX_SUFFIX
        ):
            dropped.add(index)  # the same weights as .bin: the safetensors index wins
        try:
            dropped.update(index.parent / name for name in shard_names(index))
        except CheckpointError:
            continue  # kept: loading it reports the problem as this checkpoint's failure
    return [p for p in paths if p not in dropped]
