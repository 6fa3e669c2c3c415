"""The training step of a checkpoint: stored in the file, else read from its name.

The rule, in order:

1. a step stored in the checkpoint (``"step"``/``"global_step"`` next to the state_dict, or a
   ``step`` entry in safetensors metadata) -- an integer of at most 64 bits; anything else
   there (1.5, True, 2**70) makes the checkpoint fail with a message saying so;
2. the first ``step``/``global_step``/``checkpoint``/``ckpt``/``iter``/``iteration`` followed
   by a number in the file name (``step_037_bf16.pt`` -> 37, ``epoch=3-step=1200.ckpt`` ->
   1200), then in its folder's name (``checkpoint-800/model.safetensors`` -> 800);
3. the only number in the file name (``model_100.pt`` -> 100).

A name with several bare numbers and no keyword (``run3_epoch2.pt``, a shard
``model-00001-of-00002``) gives no step: guessing one would give two files the same step. A
step that is ambiguous all the same (two different keyword numbers in the name, or a stored
step the name contradicts) is used, with a :class:`CheckpointStepWarning` saying why.

May import: torch, numpy, the standard library and :mod:`hookstats.errors`.

Example:
    >>> step_from_name("ckpt_epoch2_step001500.pt"), step_from_name("run3_epoch2.pt")
    (1500, None)
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

__all__ = ["INT64_MAX", "CheckpointStepWarning", "as_step", "name_step", "step_from_name"]

INT64_MAX = 2**63 - 1
_KEYWORD = re.compile(
    r"(?<![a-z])(?:global_step|step|checkpoint|ckpt|iteration|iter)s?[-_=]?(\d+)", re.IGNORECASE
)
_NUMBER = re.compile(r"\d+")


class CheckpointStepWarning(UserWarning):
    """A checkpoint's step is ambiguous (the name says two things, or contradicts the file),
    or two checkpoints of one run have the same step."""


def name_step(path: str | PathLike[str]) -> tuple[int | None, str | None]:
    """The step a file's name gives by the rule above, and a note when it is ambiguous.

    Example:
        >>> name_step("step_10_iter_20.pt")
        (10, "the name 'step_10_iter_20.pt' holds several steps (10, 20); the first is used")
    """
    path = Path(path)
    for text in (path.stem, path.parent.name):
        found = [int(n) for n in _KEYWORD.findall(text)]
        if found:
            note = None
            if len(set(found)) > 1:
                listed = ", ".join(map(str, dict.fromkeys(found)))
                note = f"the name {path.name!r} holds several steps ({listed}); the first is used"
            return found[0], note
    numbers = _NUMBER.findall(path.stem)
    return (int(numbers[0]) if len(numbers) == 1 else None), None


def step_from_name(path: str | PathLike[str]) -> int | None:
    """The step a file's name gives (see the module's rule), or None.

    Example:
        >>> step_from_name("out/checkpoint-800/pytorch_model.bin"), step_from_name("final.pt")
        (800, None)
    """
    return name_step(path)[0]


def as_step(value: object, where: str) -> int | None:
    """A step stored in a checkpoint as an int; None when ``value`` is None.

    Raises:
        CheckpointError: a stored step that is not an integer (a float, a bool, text that is
            no number) or that does not fit in 64 bits.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(
            f"{where} stores the step {value!r} ({type(value).__name__}), not an integer. "
            "Save the step as an int: {'model': state_dict, 'step': 1000}."
        )
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise CheckpointError(
            f"{where} stores the step {value}, which does not fit in 64 bits (the largest step "
            "a store keeps is 2**63 - 1). Re-save it with the real step."
        )
    return value
