"""profile() and estimate_layerwise_stats(): exact numbers, calls, bytes, inputs, devices."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

import hookstats as hs
from hookstats import InputSpecError

from models import MLP, KeywordOnly, SharedLayer, SmallCNN, TiedEmbedding


def test_seed_table_matches_the_seed_formulas():
    df = hs.estimate_layerwise_stats(SmallCNN(16, 32), batch_size=32, input_shape=(1, 28, 28))
    assert list(df.columns) == [
        "layer",
        "output_elements",
        "parameter_bytes",
        "activation_bytes",
        "macs",
    ]
    expected = pd.DataFrame(
        {
            "layer": ["conv1", "conv2", "classifier"],
            # 32*16*28*28 = 401_408 ; 32*32*14*14 = 200_704 ; 32*10 = 320
            "output_elements": [401_408, 200_704, 320],
            # (16*1*3*3 + 16)*4 = 640 ; (32*16*3*3 + 32)*4 = 18_560 ; (1568*10 + 10)*4 = 62_760
            "parameter_bytes": [640, 18_560, 62_760],
            # output_elements * 4
            "activation_bytes": [1_605_632, 802_816, 1_280],
            # 32*16*28*28*1*3*3 = 3_612_672 ; 32*32*14*14*16*3*3 = 28_901_376 ; 32*1568*10 = 501_760
            "macs": [3_612_672, 28_901_376, 501_760],
        }
    )
    pd.testing.assert_frame_equal(df, expected, check_dtype=False)


def test_meta_and_bf16_give_the_same_macs_and_scaled_bytes():
    model = SmallCNN(16, 32)
    cpu = hs.estimate_layerwise_stats(model, batch_size=32)
    meta = hs.estimate_layerwise_stats(model, batch_size=32, device="meta")
    pd.testing.assert_frame_equal(cpu, meta)
    bf16 = hs.estimate_layerwise_stats(model, batch_size=32, dtype=torch.bfloat16)
    assert list(bf16["macs"]) == list(cpu["macs"])
    assert list(bf16["parameter_bytes"]) == [320, 9_280, 31_380]  # half of fp32
    assert list(bf16["activation_bytes"]) == [802_816, 401_408, 640]
    assert next(model.parameters()).dtype == torch.float32  # model untouched


def test_report_frame_totals_and_containers():
    report = hs.profile(SmallCNN(16, 32), input_shape=(1, 28, 28), batch_size=32)
    frame = report.to_frame().set_index("hook_point")
    assert frame.loc["(model)", "macs"] == 3_612_672 + 28_901_376 + 501_760
    assert frame.loc["(model)", "self_macs"] == 0
    assert not frame.loc["(model)", "is_leaf"] and frame.loc["conv1", "is_leaf"]
    assert frame.loc["conv1", "output_shape"] == (32, 16, 28, 28)
    assert frame.loc["(model)", "input_bytes"] == 32 * 28 * 28 * 4
    assert report.total("macs") == 33_015_808
    # innermost points only: 1_605_632 + 802_816 + 1_280
    assert report.total("activation_bytes") == 2_409_728
    assert report.total("parameter_bytes") == 640 + 18_560 + 62_760
    with pytest.raises(KeyError, match="totals exist for: macs"):
        report.total("latency")


def test_shared_module_gives_one_row_and_two_calls():
    report = hs.profile(SharedLayer(6), input_shape=(6,), batch_size=2)
    calls = report.calls_frame()
    fc_calls = calls[calls.hook_point == "fc"]
    assert list(fc_calls.call_index) == [0, 1]
    assert list(fc_calls.macs) == [72, 72]  # 2 * 6 * 6 each
    row = report.to_frame().set_index("hook_point").loc["fc"]
    assert (row.calls, row.macs, row.activation_bytes) == (2, 144, 2 * 2 * 6 * 4)
    assert report.total("macs") == 144


def test_tied_weights_counted_once_in_totals():
    report = hs.profile(TiedEmbedding(20, 8), inputs=torch.zeros(2, 5, dtype=torch.long))
    frame = report.to_frame().set_index("hook_point")
    assert frame.loc["head", "parameter_bytes"] == 20 * 8 * 4  # the head holds the tied weight
    # embedding 20*8 + norm 2*8 = 176 parameters, the tied head adds none
    assert report.total("parameters") == 176
    assert report.total("parameter_bytes") == 176 * 4
    assert report.total("macs") == 2 * 5 * 8 * 20  # the head: tokens * 8 * 20


def test_keyword_only_forward_and_mixed_inputs():
    report = hs.profile(KeywordOnly(), kwargs={"x": torch.randn(2, 4), "scale": 2.0})
    assert report.total("macs") == 2 * 4 * 3
    assert report.to_frame().set_index("hook_point").loc["(model)", "input_bytes"] == 2 * 4 * 4


def test_nested_outputs_and_int8_sizes():
    lstm = nn.LSTM(3, 5, num_layers=2)
    report = hs.profile(lstm, inputs=torch.randn(7, 2, 3))
    row = report.to_frame().iloc[0]
    # output (7,2,5) plus h and c of (2 layers, 2, 5): 70 + 20 + 20 elements
    assert row.output_elements == 110
    assert row.activation_bytes == 440
    assert row.output_shape == ((7, 2, 5), (2, 2, 5), (2, 2, 5))

    class Quantize(nn.Module):
        def forward(self, x):
            return {"q": x.to(torch.int8), "scale": x.abs().amax()}

    report = hs.profile(Quantize(), input_shape=(4, 4), batch_size=2)
    assert report.to_frame().iloc[0].activation_bytes == 2 * 4 * 4 * 1 + 4


def test_profile_builds_a_factory_on_meta_and_accepts_a_meta_model():
    def build():
        return MLP((64, 128, 10))

    report = hs.profile(build, input_shape=(64,), batch_size=4, device="meta")
    assert report.device == "meta"
    assert report.total("macs") == 4 * (64 * 128 + 128 * 10)
    with torch.device("meta"):
        meta_model = MLP((64, 128, 10))
    assert hs.profile(meta_model, input_shape=(64,), batch_size=4).total("macs") == 37_888


def test_input_errors_are_clear():
    model = SmallCNN()
    with pytest.raises(InputSpecError, match="no input: pass input_shape"):
        hs.profile(model)
    with pytest.raises(InputSpecError, match="not both"):
        hs.profile(model, input_shape=(1, 28, 28), inputs=torch.zeros(1, 1, 28, 28))
    with pytest.raises(InputSpecError, match="batch_size must be a positive int"):
        hs.profile(model, input_shape=(1, 28, 28), batch_size=0)
    with pytest.raises(InputSpecError, match="without the batch dimension"):
        hs.profile(model, input_shape=(1, -28, 28))
    with pytest.raises(InputSpecError, match="not a floating torch dtype.*precision what-if"):
        hs.profile(model, input_shape=(1, 28, 28), dtype=torch.int8)
    with pytest.raises(InputSpecError, match="not a torch device"):
        hs.profile(model, input_shape=(1, 28, 28), device="gpu7")
    with pytest.raises(InputSpecError, match="factory returned int"):
        hs.profile(lambda: 3, input_shape=(1,))
    with pytest.raises(hs.PointSelectionError, match="'conv9' selects no module"):
        hs.profile(model, input_shape=(1, 28, 28), points="conv9")


def test_csv_and_rich_rendering(tmp_path):
    from io import StringIO

    from rich.console import Console

    report = hs.profile(SmallCNN(16, 32), input_shape=(1, 28, 28), batch_size=32)
    path = tmp_path / "layerwise_breakdown.csv"
    report.to_csv(path)
    back = pd.read_csv(path)
    assert list(back.macs) == [33_015_808, 3_612_672, 28_901_376, 501_760]
    report.to_csv(tmp_path / "calls.csv", per_call=True)
    assert len(pd.read_csv(tmp_path / "calls.csv")) == 4

    console = Console(file=StringIO(), width=140, color_system=None)
    console.print(report)
    text = console.file.getvalue()
    assert "3.61 M" in text  # conv1 MACs
    assert "1.53 MiB" in text  # conv1 activations: 1_605_632 B
    assert "33.02 M" in text  # total MACs
    assert "total" in text and "32×16×28×28" in text


class FunctionalOps(nn.Module):
    """Matrix work written with functional ops inside forward, no parameters."""

    def forward(self, a, b, v):
        x = torch.einsum("bij,bjk->bik", a, b)  # 2 * 3*4*5 = 120
        y = torch.baddbmm(x, a, b)  # 120
        z = a[0] @ v  # (3,4)@(4,) = 12
        w = torch.addmv(z, a[1], v)  # 12
        u = a.unsqueeze(1) @ b.unsqueeze(0)  # (2,1,3,4)@(1,2,4,5): batch 4 * 60 = 240
        s = torch.nn.functional.linear(a, b[0].T)  # (2,3,4) x (5,4)^T: 6 * 20 = 120
        return x, y, w, u, s


def test_functional_ops_inside_forward_are_counted():
    a, b, v = torch.randn(2, 3, 4), torch.randn(2, 4, 5), torch.randn(4)
    report = hs.profile(FunctionalOps(), inputs=(a, b, v))
    assert report.total("macs") == 120 + 120 + 12 + 12 + 240 + 120
    assert hs.profile(FunctionalOps(), inputs=(a, b, v), device="meta").total("macs") == 624


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # out length 14 - 2*(3-1) = 10: 2 batch * 10 positions * 8 out ch * (4/2 in ch * 3) = 960
        (nn.Conv1d(4, 8, 3, dilation=2, groups=2), (2, 4, 14), 2 * 10 * 8 * 2 * 3),
        # stride 2, pad 1: out 4x4 ; 1 * 16 positions * 6 out * 3 in * 3*3
        (nn.Conv2d(3, 6, 3, stride=2, padding=1), (1, 3, 8, 8), 16 * 6 * 3 * 9),
        # 3-D: out 2x2x2 ; 1 * 8 * 4 * 2 * 27
        (nn.Conv3d(2, 4, 3), (1, 2, 4, 4, 4), 8 * 4 * 2 * 27),
        # transposed: every input position (2*5*5) times the weight (4 * 3/1 * 3*3)
        (nn.ConvTranspose2d(4, 3, 3, stride=2), (2, 4, 5, 5), 50 * 4 * 3 * 9),
        # depthwise: 1 * 36 positions * 8 ch * 1 * 9
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 6, 6), 36 * 8 * 9),
    ],
)
def test_conv_modules_by_hand(layer, shape, expected):
    assert hs.profile(layer, inputs=torch.randn(shape)).total("macs") == expected
    assert hs.profile(layer, inputs=torch.randn(shape), device="meta").total("macs") == expected


def test_total_macs_is_the_models_whatever_the_selection():
    model = SmallCNN(16, 32)
    full = 2 * (16 * 28 * 28 * 9 + 32 * 14 * 14 * 16 * 9 + 1568 * 10)  # 2_063_488
    linear = hs.profile(model, input_shape=(1, 28, 28), batch_size=2, points=nn.Linear)
    assert linear.total("macs") == full
    frame = linear.to_frame().set_index("hook_point")
    assert list(frame.index) == ["classifier", hs.OUTSIDE_POINTS]
    assert frame.loc[hs.OUTSIDE_POINTS, "macs"] == full - 2 * 1568 * 10  # the convolutions
    # a selection that is never called (a container the forward bypasses) still totals all
    bypassed = nn.Sequential(nn.Sequential(nn.Linear(4, 4)), nn.Linear(4, 2))
    bypassed.forward = lambda x: bypassed[1](bypassed[0][0](x))
    report = hs.profile(bypassed, input_shape=(4,), batch_size=3, points="0")
    assert report.to_frame().set_index("hook_point").loc["0", "calls"] == 0
    assert report.total("macs") == 3 * (4 * 4 + 4 * 2)  # 72
    # with the model selected nothing is outside and there is no such row
    everything = hs.profile(model, input_shape=(1, 28, 28), batch_size=2)
    assert hs.OUTSIDE_POINTS not in set(everything.to_frame()["hook_point"])
    assert everything.total("macs") == full
