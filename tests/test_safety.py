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

pytestmark = [
    pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]


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
    with pytest.raises(MetaDeviceError, match="reads tensor values.*profile on device='cpu'"):
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


def tiny_llama_and_cache():
    transformers = pytest.importorskip("transformers", reason="transformers is in [dev]")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    return model, ids, cache


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_profile_never_changes_the_callers_cache(device):
    model, ids, cache = tiny_llama_and_cache()
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    report = hs.profile(
        model, inputs=ids[:, -1:], kwargs={"past_key_values": cache, "use_cache": True},
        device=device,
    )  # fmt: skip
    assert report.total("macs") > 0
    assert cache.get_seq_length() == 6  # not advanced by the profiled decoding step
    for (keys, values), layer in zip(before, cache.layers, strict=True):
        assert type(layer.keys) is torch.Tensor and layer.keys.device.type == "cpu"
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
    with torch.no_grad():
        logits = model(ids[:, -1:], past_key_values=cache, use_cache=True).logits
    assert type(logits) is torch.Tensor and logits.device.type == "cpu"


def test_profile_never_changes_tensors_written_in_place():
    class WritesItsInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x, state):
            state["seen"].add_(1)
            return self.fc(x.mul_(2))

    x, seen = torch.ones(2, 4), torch.zeros(1)
    hs.profile(WritesItsInput(), inputs=x, kwargs={"state": {"seen": seen}})
    assert torch.equal(x, torch.ones(2, 4)) and seen.item() == 0


class ComputesInItsConstructor(nn.Module):
    """Like torchvision's RegNet: layer widths computed with tensor values in __init__."""

    def __init__(self):
        super().__init__()
        widths = (torch.arange(3) * 4 + 4).tolist()  # fails under torch.device("meta")
        self.layers = nn.ModuleList(nn.Linear(w, w) for w in widths)

    def forward(self, x):
        return self.layers[0](x)


def test_a_factory_that_computes_in_its_constructor_is_built_with_meta_weights():
    report = hs.profile(ComputesInItsConstructor, inputs=torch.zeros(2, 4), device="meta")
    assert report.total("macs") == 2 * 4 * 4
    assert report.total("parameters") == (16 + 4) + (64 + 8) + (144 + 12)  # 248


def test_a_factory_that_cannot_be_built_on_meta_gets_a_clear_error():
    def broken():
        raise RuntimeError("checkpoint file missing")

    with pytest.raises(MetaDeviceError, match=r"constructor raised RuntimeError: checkpoint"):
        hs.profile(broken, input_shape=(4,), device="meta")


class FailsOnlyOnFake(nn.Module):
    """Meta fails (CPU tensor made inside) and fake fails for a reason that is not values."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x) + torch.ones(4)
        if type(y).__name__ == "FakeTensor":
            raise TypeError("unsupported tensor subclass in my_kernel")
        return y


def test_meta_error_quotes_the_real_cause_and_torch_stays_quiet(caplog):
    with pytest.raises(MetaDeviceError) as info:
        hs.profile(FailsOnlyOnFake(), input_shape=(4,), device="meta")
    message = str(info.value)
    assert "TypeError" in message and "unsupported tensor subclass in my_kernel" in message
    assert "reads tensor values" not in message  # no claim of data-dependent code
    with caplog.at_level("DEBUG", logger="torch"), pytest.raises(MetaDeviceError):
        hs.profile(NeedsValues(), input_shape=(4,), device="meta")
    assert [r for r in caplog.records if r.name.startswith("torch._subclasses")] == []
