"""Training callbacks with a probe batch, Trainer saves keyed by the sweep's content identity
(a moved output folder is still skipped; a rerun that saves again to the same path replaces
its rows), and ``MetricStore.to_tensorboard`` read back with TensorBoard's EventAccumulator."""

from __future__ import annotations

import math
import shutil
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from test_integrations_training import (
    RecordingLogger,
    Regressor,
    build_regressor,
    lightning_module,
    regression_rows,
    train,
)
from torch import nn

import hookstats as hs
from hookstats.errors import HookstatsError, StoreError
from hookstats.integrations import common
from hookstats.integrations import lightning as hs_lightning
from hookstats.integrations import transformers as hs_transformers
from hookstats.integrations.tensorboard import export_tensorboard
from hookstats.integrations.transformers import TrainerHooks, checkpoint_folder, sweep_key
from hookstats.runs.sweeper import checkpoint_identity

METRICS = ["l2", "act_rms", "act_zero_frac"]


def probe_batch() -> torch.Tensor:
    return torch.stack([row["x"] for row in regression_rows(16)])


def frame_of(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """The rows one log must hold, from compute_metrics and activation_stats run directly."""
    weights = hs.compute_metrics(model, nn.Linear, ["l2"])
    activations = hs.activation_stats(model, nn.Linear, METRICS[1:], inputs=(x,))
    return pd.concat([weights, activations], ignore_index=True)


# -- Hugging Face Trainer ----------------------------------------------------------------------


def test_trainer_logs_activations_of_the_probe_at_each_save(tmp_path):
    x = probe_batch()
    callback = hs_transformers.HookstatsCallback(
        tmp_path / "m.sqlite", "ft", nn.Linear, METRICS, every="save", probe=(x, None)
    )
    model = train(tmp_path, callback, save_steps=2)
    store = hs.MetricStore(tmp_path / "m.sqlite")
    frame = store.to_frame(run="ft")
    # per save: l2 at (model), fc1, fc2 and 2 activation metrics at fc1, fc2 = 3 + 4 rows
    assert frame.groupby("step").size().to_dict() == {2: 7, 4: 7, 6: 7}
    last = frame[frame["step"] == 6][["hook_point", "metric", "value", "note"]]
    pd.testing.assert_frame_equal(last.reset_index(drop=True), frame_of(model, x), check_exact=True)
    # a later sweep of the saved files with the same probe skips every save; into a fresh run
    # it computes the same rows from the files
    files = str(tmp_path / "out" / "checkpoint-*" / "model.safetensors")
    args = (build_regressor, store)
    options = {"points": nn.Linear, "metrics": METRICS, "probe": (x, None), "progress": False}
    summary = hs.sweep(files, *args, "ft", **options)
    assert (summary.done, summary.skipped, summary.failed) == (0, 3, 0)
    assert hs.sweep(files, *args, "fresh", **options).done == 3
    assert store.to_frame(run="fresh")["value"].tolist() == frame["value"].tolist()
    store.close()


def test_a_moved_output_folder_is_still_skipped_by_a_sweep(tmp_path):
    callback = hs_transformers.HookstatsCallback(
        tmp_path / "m.sqlite", "ft", nn.Linear, ["l2"], every="save"
    )
    train(tmp_path, callback, save_steps=3)
    moved = tmp_path / "archive" / "out"
    moved.parent.mkdir()
    shutil.move(tmp_path / "out", moved)  # keeps modification times
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        files = [checkpoint_folder(moved, s) / "model.safetensors" for s in (3, 6)]
        assert store.checkpoints("ft")["identity"].tolist() == [
            checkpoint_identity(f) for f in files
        ]
        summary = hs.sweep(files, build_regressor, store, "ft", nn.Linear, ["l2"], progress=False)
        assert (summary.done, summary.skipped) == (0, 2)  # keyed by path, both were redone
        # a sweep over the output folder (its checkpoint-*/ folders) skips the saves too; it
        # also lists their optimizer.pt, scheduler.pt, rng_state.pth and training_args.bin,
        # which are no model weights and fail
        folders = hs.sweep(moved, build_regressor, store, "ft", nn.Linear, ["l2"], progress=False)
        assert (folders.skipped, folders.done) == (2, 0)


def save(folder, seed: int) -> nn.Module:
    """Write a Trainer-like checkpoint folder with seeded weights; return the model."""
    safetensors = pytest.importorskip("safetensors.torch", reason="hookstats[safetensors]")
    torch.manual_seed(seed)
    model = Regressor()
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.save_file(model.state_dict(), str(folder / "model.safetensors"))
    return model


@pytest.mark.parametrize("if_exists", ["replace", "skip", "error"])
def test_a_rerun_saving_to_the_same_path_follows_if_exists(tmp_path, if_exists):
    args = types.SimpleNamespace(output_dir=str(tmp_path / "out"))
    state = types.SimpleNamespace(global_step=2, is_world_process_zero=True)
    folder = checkpoint_folder(tmp_path / "out", 2)
    first = save(folder, seed=1)
    hooks = TrainerHooks(tmp_path / "m.sqlite", "ft", nn.Linear, ["l2"], if_exists=if_exists)
    hooks.on_save(args, state, None, model=first)
    second = save(folder, seed=2)  # the rerun's save: same path, new content
    weights = folder / "model.safetensors"
    assert sweep_key(folder) == checkpoint_identity(weights)
    rerun = TrainerHooks(tmp_path / "m.sqlite", "ft", nn.Linear, ["l2"], if_exists=if_exists)
    if if_exists == "error":
        with pytest.raises(StoreError, match="is already in the store. Pass if_exists='replace'"):
            rerun.on_save(args, state, None, model=second)
    else:
        rerun.on_save(args, state, None, model=second)
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        done = store.checkpoints("ft")
        values = store.to_frame(run="ft")["value"].tolist()
    assert done["checkpoint"].tolist() == [str(weights.resolve())]  # the step once
    kept = second if if_exists == "replace" else first
    assert values == hs.compute_metrics(kept, nn.Linear, ["l2"])["value"].tolist()
    identity = sweep_key(folder) if if_exists == "replace" else done["identity"].iloc[0]
    assert done["identity"].tolist() == [identity]


def test_trainer_callback_checks_its_probe_before_training(tmp_path):
    with pytest.raises(hs.MetricError, match=r"no probe batch to run. Pass probe="):
        TrainerHooks(tmp_path / "m.sqlite", "r", metrics=["l2", "act_rms"])
    with pytest.raises(hs.MetricError, match=r"kwargs must be a dict or None"):
        TrainerHooks(tmp_path / "m.sqlite", "r", metrics=["act_rms"], probe=(probe_batch(), 1))
    with pytest.raises(hs.MetricError, match=r"probe= must be \(inputs, kwargs\)"):
        hs_lightning.LightningHooks(tmp_path / "m.sqlite", "r", probe=[probe_batch()])
    assert not (tmp_path / "m.sqlite").exists()


# -- Lightning -------------------------------------------------------------------------------


def test_lightning_hooks_log_and_forward_probe_activations(tmp_path):
    x = probe_batch()
    hooks = hs_lightning.LightningHooks(
        tmp_path / "m.sqlite", "pl", nn.Linear, METRICS, every_n_steps=2, probe=(x, None)
    )
    logger = RecordingLogger(None)
    trainer = types.SimpleNamespace(global_step=2, is_global_zero=True, loggers=[logger])
    model = build_regressor()
    hooks.on_train_batch_end(trainer, model, None, None, 0)
    want = frame_of(model, x)
    assert hooks.last is not None
    pd.testing.assert_frame_equal(
        hooks.last.drop(columns="step"), want, check_exact=True, check_like=False
    )
    assert logger.calls == [
        (
            2,
            {
                common.metric_key(m, p, sanitized=True): v
                for p, m, v in zip(want["hook_point"], want["metric"], want["value"], strict=True)
                if not math.isnan(v)
            },
        )
    ]
    assert "hookstats/act_rms/fc1" in logger.calls[0][1]


@pytest.mark.slow
def test_a_real_lightning_fit_logs_probe_activations(tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="hookstats[lightning]")
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(-1)), batch_size=8)
    callback = hs_lightning.HookstatsCallback(
        tmp_path / "m.sqlite", "pl", nn.Linear, METRICS, every_n_steps=2, probe=(x[:5], None)
    )
    module = lightning_module(pl)
    with pytest.raises(hs.ForwardError, match='missing the required "forward" function'):
        hs.activation_stats(module, nn.Linear, inputs=x)  # the probe needs a forward

    class WithForward(type(module)):
        def forward(self, batch):
            return self.net(batch)

    module = WithForward()
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, loader)
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        frame = store.to_frame(run="pl")
    # steps 2 and 4: l2 at (model), net.0, net.2 and 2 activation metrics at net.0, net.2
    assert frame.groupby("step").size().to_dict() == {2: 7, 4: 7}
    last = frame[frame["step"] == 4][["hook_point", "metric", "value", "note"]]
    want = pd.concat(
        [
            hs.compute_metrics(module, nn.Linear, ["l2"]),
            hs.activation_stats(module, nn.Linear, METRICS[1:], inputs=(x[:5],)),
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(last.reset_index(drop=True), want, check_exact=True)
    assert module.training  # the probe's forward left the training flags as they were


# -- MetricStore.to_tensorboard --------------------------------------------------------------


def test_store_to_tensorboard_reads_back_with_event_accumulator(tmp_path):
    pytest.importorskip("tensorboard", reason="hookstats[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x = probe_batch()
    store = hs.MetricStore(tmp_path / "m.sqlite")
    logger = hs.CheckpointLogger(store, "a", nn.Linear, METRICS, probe=(x, None))
    model = build_regressor()
    logger.log(model, 10)
    with torch.no_grad():
        model.fc1.weight.mul_(3.0)
    logger.log(model, 20)
    hs.CheckpointLogger(store, "b", metrics=["l2"]).log(model, 5)

    folders = store.to_tensorboard(tmp_path / "tb", run="a", metric=["l2", "act_rms"])
    assert folders == [tmp_path / "tb" / "a"]
    events = EventAccumulator(str(folders[0]), size_guidance={"scalars": 0}).Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    frame = store.to_frame(run="a", metric=["l2", "act_rms"])
    want = {
        (common.metric_key(m, p), int(s)): v
        for s, p, m, v in zip(
            frame["step"], frame["hook_point"], frame["metric"], frame["value"], strict=True
        )
    }
    assert len(want) == 2 * (3 + 2)  # 2 steps x (l2 at (model), fc1, fc2 + act_rms at fc1, fc2)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == np.float32(value)  # TensorBoard keeps scalars as float32
    # every run by default, one folder each, as the exporter it calls
    assert store.to_tensorboard(tmp_path / "all") == [
        tmp_path / "all" / "a",
        tmp_path / "all" / "b",
    ]
    assert export_tensorboard(store, tmp_path / "all2") == [
        tmp_path / "all2" / "a",
        tmp_path / "all2" / "b",
    ]
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.to_tensorboard(tmp_path / "x", run="nope")
    store.close()


def test_store_to_tensorboard_without_the_extra_names_the_pip_install(tmp_path, monkeypatch):
    store = hs.MetricStore(":memory:")
    hs.CheckpointLogger(store, "a", metrics=["l2"]).log(nn.Linear(2, 2), 1)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(HookstatsError, match=r"needs tensorboard: pip install hookstats\[tens"):
        store.to_tensorboard(tmp_path / "tb", run="a")
