"""The model comes back as it was: no hooks, attributes or patches; flags and devices kept;
errors name the module that raised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hookstats as hs
from hookstats import ForwardError, MetaDeviceError

from models import RaisesInside, SmallCNN, TinyTransformer


def snapshot(model: nn.Module):
    return {
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
        "attrs": [sorted(vars(m)) for m in model.modules()],
        "training": [m.training for m in model.modules()],
        "params": [
            (n, id(p), p.device, p.dtype, p.requires_grad) for n, p in model.named_parameters()
        ],
        "values": {k: v.clone() for k, v in model.state_dict().items()},
        "forward": [m.forward for m in model.modules()],
        "functional": (F.linear, F.conv2d, F.scaled_dot_product_attention, torch.matmul),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["hooks"] == 0
    for key in ("attrs", "training", "params", "forward", "functional"):
        assert after[key] == before[key], key
    for name, value in before["values"].items():
        assert torch.equal(after["values"][name], value), name


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_model_unchanged_after_success(device):
    model = TinyTransformer()
    model.train()
    model.blocks[0].eval()  # mixed flags must come back exactly
    before = snapshot(model)
    hs.profile(
        model, inputs=torch.zeros(2, 5, dtype=torch.long), device=device, dtype=torch.float64
    )
    assert_unchanged(model, before)


def test_model_unchanged_and_module_named_when_forward_raises():
    model = RaisesInside()
    before = snapshot(model)
    with pytest.raises(ForwardError, match="ValueError in module 'bad'.*boom") as info:
        hs.profile(model, input_shape=(4,))
    assert info.value.hook_point == "bad"
    assert isinstance(info.value.__cause__, ValueError)
    assert_unchanged(model, before)


def test_wrong_input_shape_names_the_first_module_that_rejects_it():
    model = SmallCNN()
    before = snapshot(model)
    with pytest.raises(ForwardError, match="in module 'conv1'"):
        hs.profile(model, input_shape=(3, 28, 28))
    with pytest.raises(ForwardError, match="in module 'classifier'"):
        hs.profile(model, input_shape=(1, 32, 32), points="conv*")  # unselected still named
    assert_unchanged(model, before)


class MakesCpuTensors(nn.Module):
    """Creates a tensor on the default device inside forward: meta fails, fake tensors work."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + torch.ones(4)


class NeedsValues(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y * int(y.sum().item() > 0)


def test_meta_falls_back_to_fake_tensors():
    model = MakesCpuTensors()
    before = snapshot(model)
    report = hs.profile(model, input_shape=(4,), batch_size=3, device="meta")
    assert report.fallback == "fake tensors"
    assert report.total("macs") == 3 * 4 * 4
    assert_unchanged(model, before)


def test_data_dependent_model_gets_a_clear_meta_error():
    model = NeedsValues()
    before = snapshot(model)
    with pytest.raises(MetaDeviceError, match="needs values: profile on device='cpu'"):
        hs.profile(model, input_shape=(4,), device="meta")
    assert_unchanged(model, before)
    assert hs.profile(model, input_shape=(4,)).total("macs") == 16  # fine on cpu


def test_uncounted_matrix_work_is_reported_not_zero():
    class Distances(nn.Module):
        def forward(self, x):
            return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")

    with pytest.warns(hs.UncountedOpsWarning, match=r"_cdist_forward x1 in \(model\)"):
        report = hs.profile(Distances(), input_shape=(5, 3), batch_size=2)
    op = report.uncounted_ops["aten._cdist_forward"]
    assert (op.calls, op.hook_points) == (1, {"(model)"})
