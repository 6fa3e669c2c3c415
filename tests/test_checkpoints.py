"""Safe checkpoint loading: layouts, steps, globs, and every kind of bad file."""

from __future__ import annotations

import pickle
import sys

import pytest
import torch

from hookstats.errors import CheckpointError, UnsafeCheckpointError
from hookstats.runs.checkpoints import (
    find_checkpoints,
    load_checkpoint,
    load_into,
    step_from_name,
)

from models import MLP


def save_file(tensors, path, metadata=None):
    """safetensors' save_file; the test skips when the [safetensors] extra is missing."""
    st = pytest.importorskip("safetensors.torch", reason="needs the [safetensors] extra")
    st.save_file(tensors, path, metadata=metadata)


class Payload:
    """Unpickling this calls open(marker, "w"): it creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return MLP((8, 16, 4)).state_dict()


def test_plain_state_dict_takes_step_from_name(tmp_path, state):
    path = tmp_path / "step_30.pt"
    torch.save(state, path)
    loaded = load_checkpoint(path)
    assert loaded.step == 30
    assert loaded.state_dict.keys() == state.keys()
    assert all(torch.equal(loaded.state_dict[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "layout",
    [
        {"model": "STATE", "step": 7},
        {"state_dict": "STATE", "global_step": 7, "epoch": 1},
        {"model_state_dict": "STATE", "step": torch.tensor(7)},
    ],
)
@pytest.mark.filterwarnings("ignore::hookstats.runs.steps.CheckpointStepWarning")
def test_wrapped_layouts_step_from_file_wins_over_name(tmp_path, state, layout):
    path = tmp_path / "ckpt_100.pt"
    torch.save({k: state if v == "STATE" else v for k, v in layout.items()}, path)
    loaded = load_checkpoint(path)
    assert loaded.step == 7  # from the file, not the 100 in the name
    assert torch.equal(loaded.state_dict["layers.0.weight"], state["layers.0.weight"])


@pytest.mark.filterwarnings("ignore::hookstats.runs.steps.CheckpointStepWarning")
def test_safetensors_step_from_metadata_or_name(tmp_path, state):
    save_file(state, tmp_path / "a_5.safetensors", metadata={"step": "12"})
    save_file(state, tmp_path / "b_5.safetensors")
    assert load_checkpoint(tmp_path / "a_5.safetensors").step == 12
    loaded = load_checkpoint(tmp_path / "b_5.safetensors")
    assert loaded.step == 5
    assert torch.equal(loaded.state_dict["layers.1.bias"], state["layers.1.bias"])


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("step_001500.pt", 1500),
        ("run3_epoch2_step40.pth", 40),
        ("run7/final.pt", None),
        ("out/checkpoint-800/pytorch_model.bin", 800),
        ("model-10.safetensors", 10),
    ],
)
def test_step_from_name(name, step):
    assert step_from_name(name) == step


def test_glob_and_folder_sort_by_step_list_keeps_order(tmp_path, state):
    for step in (10, 2, 100):
        torch.save(state, tmp_path / f"step_{step}.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    by_step = [tmp_path / f"step_{s}.pt" for s in (2, 10, 100)]
    assert find_checkpoints(str(tmp_path / "*.pt")) == by_step
    assert find_checkpoints(tmp_path) == by_step
    listed = [tmp_path / "step_100.pt", tmp_path / "step_2.pt", tmp_path / "step_100.pt"]
    assert find_checkpoints(listed) == listed[:2]  # order kept, duplicate dropped


def test_glob_matching_nothing_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"the glob .*\*\.pt' matches no checkpoint file"):
        find_checkpoints(str(tmp_path / "*.pt"))
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*nope.pt"):
        find_checkpoints([tmp_path / "nope.pt"])
    with pytest.raises(CheckpointError, match="holds no checkpoint file"):
        find_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoints given"):
        find_checkpoints([])


def test_empty_file(tmp_path):
    (tmp_path / "step_1.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\).*Re-save it"):
        load_checkpoint(tmp_path / "step_1.pt")


def test_truncated_and_garbage_files(tmp_path, state):
    torch.save(state, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.bin").write_bytes(b"definitely not a checkpoint " * 20)
    for name in ("half.pt", "junk.bin"):
        with pytest.raises(CheckpointError, match="is corrupt, truncated or not a PyTorch"):
            load_checkpoint(tmp_path / name)


def test_corrupt_safetensors(tmp_path, state):
    save_file(state, tmp_path / "s.safetensors")
    data = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "s.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        load_checkpoint(tmp_path / "s.safetensors")


def test_safetensors_without_the_extra(tmp_path, state, monkeypatch):
    save_file(state, tmp_path / "s_1.safetensors")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(CheckpointError, match=r"pip install hookstats\[safetensors\]"):
        load_checkpoint(tmp_path / "s_1.safetensors")


def test_the_payload_is_real_when_unpickled_unsafely(tmp_path):
    """Control: the same payload does run under a plain unpickler (so the refusal matters)."""
    marker = tmp_path / "control-marker"
    data = pickle.dumps({"w": Payload(str(marker))}, protocol=2)
    pickle.loads(data)  # the unsafe way
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("how", "needs"),
    [
        ("torch.save", "the pickle global io.open"),
        ("protocol 2", "the pickle global io.open"),
        ("protocol 5", "a pickle instruction"),
    ],
)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how, needs):
    marker = tmp_path / "marker"
    path = tmp_path / "step_1.pt"
    if how == "torch.save":
        torch.save({"model": {"w": Payload(str(marker))}, "step": 1}, path)
    else:
        protocol = int(how.split()[1])
        path.write_bytes(pickle.dumps({"w": Payload(str(marker))}, protocol=protocol))
    with pytest.raises(
        UnsafeCheckpointError,
        match=(
            rf"refused to load .*step_1.pt: it needs {needs}[^,]*, which could run arbitrary code.*"
            r"can never run code.*re-save a plain state_dict.*safetensors"
        ),
    ):
        load_checkpoint(path)
    assert not marker.exists()


def test_unknown_global_is_refused_too(tmp_path, state):
    import numpy as np

    torch.save({"model": state, "step": np.int64(3)}, tmp_path / "np.pt")
    with pytest.raises(UnsafeCheckpointError, match="needs the pickle global numpy"):
        load_checkpoint(tmp_path / "np.pt")


def test_not_a_state_dict(tmp_path, state):
    torch.save([state["layers.0.weight"]], tmp_path / "list.pt")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "opt.pt")
    with pytest.raises(CheckpointError, match=r"holds a list, not a state_dict.*'step': n"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"holds a dict with keys \['epoch', 'optimizer'\]"):
        load_checkpoint(tmp_path / "opt.pt")


def test_load_into_copies_weights_and_strips_ddp_prefix(tmp_path, state):
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "step_1.pt")
    model = MLP((8, 16, 4))
    load_into(model, load_checkpoint(tmp_path / "step_1.pt"))
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)


def test_load_into_names_missing_unexpected_and_mismatched(tmp_path, state):
    bad = dict(state)
    del bad["layers.1.bias"]
    bad["extra.weight"] = torch.zeros(1)
    bad["layers.0.weight"] = torch.zeros(3, 8)
    torch.save(bad, tmp_path / "step_2.pt")
    with pytest.raises(
        CheckpointError,
        match=(
            r"does not fit the model built by build_model\(\) \(missing keys: layers.1.bias; "
            r"unexpected keys: extra.weight; shape mismatch: layers.0.weight \(3, 8\) vs model "
            r"\(16, 8\)\)\. build_model\(\) must build the architecture"
        ),
    ):
        load_into(MLP((8, 16, 4)), load_checkpoint(tmp_path / "step_2.pt"))


def test_a_trainer_output_folder_sweeps_only_the_weights(tmp_path, state):
    """Hugging Face Trainer saves optimizer, scheduler, RNG and argument files beside the
    weights: folder listings and globs leave them out (a sweep would fail on each)."""
    for step in (4, 8):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        torch.save(state, folder / "pytorch_model.bin")
        for extra in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
            torch.save({"not": torch.zeros(1)}, folder / extra)
        torch.save({"not": torch.zeros(1)}, folder / "rng_state_1.pth")
    found = find_checkpoints(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "checkpoint-4/pytorch_model.bin",
        "checkpoint-8/pytorch_model.bin",
    ]
    assert len(find_checkpoints(str(tmp_path / "checkpoint-*" / "*"))) == 2
    # named explicitly, an optimizer file is still read (and then fails as not a state_dict)
    assert find_checkpoints(tmp_path / "checkpoint-4" / "optimizer.pt")[0].name == "optimizer.pt"
