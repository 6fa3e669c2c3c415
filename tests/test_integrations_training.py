"""Training callbacks: a real transformers.Trainer and a real Lightning Trainer for a few CPU
steps; each logged step appears once in the store, saves are keyed so that a later sweep skips
them, only the main process logs, and the values are those of the weights at that step."""

from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch
from torch import nn

import hookstats as hs
from hookstats.errors import HookstatsError, MetricError, StoreError
from hookstats.integrations import lightning as hs_lightning
from hookstats.integrations import transformers as hs_transformers
from hookstats.integrations.transformers import TrainerHooks, checkpoint_folder, sweep_key
from hookstats.runs.sweeper import checkpoint_identity

METRICS = ["l2", "spectral_norm"]


class Regressor(nn.Module):
    """A Trainer-compatible model: forward(x, labels) -> {"loss", "logits"}."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        out = self.fc2(self.act(self.fc1(x))).squeeze(-1)
        loss = ((out - labels) ** 2).mean() if labels is not None else None
        return {"loss": loss, "logits": out}


def build_regressor() -> nn.Module:
    torch.manual_seed(0)
    return Regressor()


def regression_rows(n: int = 64) -> list[dict[str, torch.Tensor]]:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return [{"x": x[i], "labels": x[i].sum()} for i in range(n)]


def train(tmp_path, callback, **args):
    transformers = pytest.importorskip("transformers", reason="hookstats[transformers]")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    settings = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 6,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "use_cpu": True,
        "report_to": [],
        "disable_tqdm": True,
        "logging_steps": 1000,
        **args,
    }
    model = build_regressor()
    trainer = transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(**settings),
        train_dataset=regression_rows(),
        callbacks=[callback],
    )
    trainer.train()
    return model


def test_trainer_logs_each_save_once_and_a_later_sweep_skips_them(tmp_path):
    callback = hs_transformers.HookstatsCallback(
        tmp_path / "m.sqlite", "ft", nn.Linear, METRICS, every="save"
    )
    train(tmp_path, callback, save_steps=2)
    store = hs.MetricStore(tmp_path / "m.sqlite")
    done = store.checkpoints("ft")
    assert done["step"].tolist() == [2, 4, 6]  # max_steps 6, a save every 2: each once
    folders = [checkpoint_folder(tmp_path / "out", s) for s in (2, 4, 6)]
    assert done["checkpoint"].tolist() == [
        str((f / "model.safetensors").resolve()) for f in folders
    ]
    frame = store.to_frame(run="ft")
    assert frame.groupby("step").size().tolist() == [2 * 3] * 3  # 2 metrics x (model), fc1, fc2

    files = str(tmp_path / "out" / "checkpoint-*" / "model.safetensors")
    summary = hs.sweep(files, build_regressor, store, "ft", nn.Linear, METRICS, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (0, 3, 0)
    fresh = hs.sweep(files, build_regressor, store, "fresh", nn.Linear, METRICS, progress=False)
    assert fresh.done == 3
    again = store.to_frame(run="fresh")
    # the callback saw exactly the weights the Trainer saved: the sweep of the files agrees
    assert again["value"].tolist() == frame["value"].tolist()
    assert len(store.to_frame(run="ft")) == len(frame)  # the skipping sweep wrote nothing
    store.close()


def test_trainer_every_n_steps_with_gradient_accumulation(tmp_path):
    callback = hs_transformers.HookstatsCallback(
        tmp_path / "m.sqlite", "every", metrics=["l2"], every=2
    )
    model = train(tmp_path, callback, gradient_accumulation_steps=3, save_strategy="no")
    store = hs.MetricStore(tmp_path / "m.sqlite")
    done = store.checkpoints("every")
    # 6 optimizer steps of 3 micro-batches each: steps 2, 4, 6, each once, keyed step:<n>
    assert done["checkpoint"].tolist() == ["step:2", "step:4", "step:6"]
    last = store.to_frame(run="every", hook_point="fc2")
    assert last["value"].iloc[-1] == hs.compute_metrics(model, "fc2", ["l2"])["value"].iloc[-1]
    assert callback.last is not None and set(callback.last["step"]) == {6}
    store.close()


def test_trainer_warns_when_every_save_meets_no_saves(tmp_path):
    callback = hs_transformers.HookstatsCallback(tmp_path / "m.sqlite", "r", metrics=["l2"])
    with pytest.warns(UserWarning, match="save_strategy is 'no': nothing will be logged"):
        train(tmp_path, callback, save_strategy="no", max_steps=1)
    assert not (tmp_path / "m.sqlite").exists()  # nothing logged: the store never opened


def test_only_the_main_process_logs_and_opens_the_store(tmp_path):
    hooks = TrainerHooks(tmp_path / "m.sqlite", "ddp", metrics=["l2"], every=1)
    args = types.SimpleNamespace(output_dir=str(tmp_path / "out"))
    model = build_regressor()
    for rank in (1, 2, 3):
        state = types.SimpleNamespace(global_step=rank, is_world_process_zero=False)
        hooks.on_step_end(args, state, None, model=model)
        hooks.on_save(args, state, None, model=model)
    assert not (tmp_path / "m.sqlite").exists()
    state = types.SimpleNamespace(global_step=3, is_world_process_zero=True)
    hooks.on_step_end(args, state, None, model=model)
    hooks.on_step_end(args, state, None, model=model)  # the same step again: once
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        assert store.checkpoints("ddp")["checkpoint"].tolist() == ["step:3"]


def test_callback_arguments_are_checked_before_training(tmp_path):
    with pytest.raises(HookstatsError, match=r"every= \(\"save\" or a number of steps\) must be"):
        TrainerHooks(tmp_path / "m.sqlite", "r", every="epoch")
    with pytest.raises(HookstatsError, match="every_n_steps must be a positive int"):
        hs_lightning.LightningHooks(tmp_path / "m.sqlite", "r", every_n_steps=0)
    with pytest.raises(MetricError, match="unknown metric"):
        TrainerHooks(tmp_path / "m.sqlite", "r", metrics=["l2x"])
    with pytest.raises(MetricError, match="activation metric"):
        TrainerHooks(tmp_path / "m.sqlite", "r", metrics=["act_rms"])
    with pytest.raises(StoreError, match="if_exists must be one of"):
        TrainerHooks(tmp_path / "m.sqlite", "r", if_exists="skp")  # type: ignore[arg-type]
    assert not (tmp_path / "m.sqlite").exists()


def test_sweep_key_is_the_identity_the_sweep_stores(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch", reason="hookstats[safetensors]")
    folder = tmp_path / "out" / "checkpoint-7"
    folder.mkdir(parents=True)
    assert sweep_key(folder) == str(folder.resolve())  # no weights file: no sweep finds one
    state = build_regressor().state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        hs.sweep(folder / "pytorch_model.bin", build_regressor, store, "bin", metrics=["l2"],
                 progress=False)  # fmt: skip
        assert store.checkpoints("bin")["identity"].tolist() == [sweep_key(folder)]
        safetensors.save_file(state, str(folder / "model.safetensors"))  # preferred
        hs.sweep(folder / "model.safetensors", build_regressor, store, "st", metrics=["l2"],
                 progress=False)  # fmt: skip
        assert store.checkpoints("st")["identity"].tolist() == [sweep_key(folder)]
    assert sweep_key(folder) == checkpoint_identity(folder / "model.safetensors")
    assert sweep_key(folder) != checkpoint_identity(folder / "pytorch_model.bin")


@pytest.mark.parametrize(
    "module, package", [(hs_transformers, "transformers"), (hs_lightning, "lightning")]
)
def test_callback_classes_are_built_lazily_with_a_clear_missing_extra(monkeypatch, module, package):
    monkeypatch.setattr(module, "_BUILT", {})
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.setitem(sys.modules, f"{package}.pytorch", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    with pytest.raises(
        HookstatsError, match=rf"needs {package}: pip install hookstats\[{package}\]"
    ):
        module.HookstatsCallback  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        module.Nope  # noqa: B018


def test_transformers_callback_is_a_trainer_callback_and_pickles(tmp_path):
    transformers = pytest.importorskip("transformers", reason="hookstats[transformers]")
    cls = hs_transformers.HookstatsCallback
    callback = cls(tmp_path / "m.sqlite", "r", metrics=["l2"], every=5)
    assert (
        isinstance(callback, transformers.TrainerCallback)
        and cls is hs_transformers.HookstatsCallback
    )
    copy = pickle.loads(pickle.dumps(callback))
    assert type(copy) is cls and copy.every == 5 and copy.steps.run == "r"


# -- Lightning --------------------------------------------------------------------------------


def lightning_module(pl):
    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return ((self.net(x).squeeze(-1) - y) ** 2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Lit()


class RecordingLogger:
    """Stands for trainer.loggers entries: records every log_metrics call."""

    def __init__(self, base):
        self.base, self.calls = base, []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))


@pytest.mark.slow
def test_lightning_logs_every_n_steps_once_and_forwards_to_loggers(tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="hookstats[lightning]")
    from lightning.pytorch.loggers import CSVLogger

    class Recording(CSVLogger):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls = []

        def log_metrics(self, metrics, step=None):
            if any(k.startswith("hookstats/") for k in metrics):
                self.calls.append((step, dict(metrics)))
            super().log_metrics(metrics, step)

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(-1)), batch_size=8)
    callback = hs_lightning.HookstatsCallback(
        tmp_path / "m.sqlite", "pl", nn.Linear, ["l2"], every_n_steps=2
    )
    assert isinstance(callback, pl.Callback)
    logger = Recording(str(tmp_path))
    module = lightning_module(pl)
    trainer = pl.Trainer(
        max_steps=7,
        accumulate_grad_batches=2,  # 2 micro-batches per optimizer step
        accelerator="cpu",
        logger=logger,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, loader)
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        done = store.checkpoints("pl")
        frame = store.to_frame(run="pl")
    # optimizer steps 1..7 (14 micro-batches over 8 per epoch): 2, 4, 6 each once
    assert done["checkpoint"].tolist() == ["step:2", "step:4", "step:6"]
    assert frame.groupby("step").size().tolist() == [3, 3, 3]  # (model), net.0, net.2
    assert [step for step, _ in logger.calls] == [2, 4, 6]
    for step, values in logger.calls:
        rows = frame[frame["step"] == step]
        assert values == {
            f"hookstats/l2/{p.replace('(model)', '_model_')}": v
            for p, v in zip(rows["hook_point"], rows["value"], strict=True)
        }


def test_lightning_hooks_rank_zero_only_and_no_forwarding(tmp_path):
    hooks = hs_lightning.LightningHooks(
        tmp_path / "m.sqlite", "r", metrics=["l2"], every_n_steps=1, log_to_loggers=False
    )
    logger = RecordingLogger(None)
    trainer = types.SimpleNamespace(global_step=1, is_global_zero=False, loggers=[logger])
    hooks.on_train_batch_end(trainer, build_regressor(), None, None, 0)
    assert not (tmp_path / "m.sqlite").exists()
    trainer.is_global_zero = True
    hooks.on_train_batch_end(trainer, build_regressor(), None, None, 0)
    assert hooks.last is not None and logger.calls == []
    with hs.MetricStore(tmp_path / "m.sqlite") as store:
        assert store.checkpoints("r")["step"].tolist() == [1]
