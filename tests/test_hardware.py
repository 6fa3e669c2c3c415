"""summarize_hardware / precision_tradeoffs against hand computations, device presets, errors."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import torch
from rich.console import Console
from table_text import headers, rows
from torch import nn

import hookstats as hs
from hookstats import track
from hookstats.errors import InputSpecError
from hookstats.hardware import (
    HardwareSpec,
    canonical_precision,
    hardware_spec,
    measure_cpu,
    precision_tradeoffs,
    summarize_hardware,
)

from models import SmallCNN


def tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


# batch 2 through tiny():
#   layer 0: params (4*8 + 8) * 4 = 160 B, input 2*4*4 = 32 B, output 2*8*4 = 64 B, 2*4*8 = 64 MACs
#   layer 2: params (8*2 + 2) * 4 = 72 B, input = layer 0's output 64 B, output 2*2*4 = 16 B,
#            2*8*2 = 32 MACs
L0_BYTES = 160 + 32 + 64  # 256
L2_BYTES = 72 + 64 + 16  # 152
TOTAL_BYTES = L0_BYTES + L2_BYTES  # 408
FLOPS = 2 * (64 + 32)  # 192


def test_seed_table_against_hand_computation():
    df = hs.estimate_layerwise_stats(tiny(), batch_size=2, input_shape=(4,))
    hw = summarize_hardware(
        df, latency_ms=0.001, memory_bandwidth_gbps=100, peak_tflops=1.0, input_bytes=32
    )
    layers = hw.rows.set_index("hook_point")
    assert layers["input_bytes"].tolist() == [32, 64]  # given; then the previous output
    assert layers["bytes_moved"].tolist() == [L0_BYTES, L2_BYTES]
    assert layers.loc["0", "arithmetic_intensity"] == pytest.approx(128 / 256)  # 0.5 FLOP/B
    assert layers.loc["0", "memory_ms"] == pytest.approx(256 / 100e9 * 1e3)  # 2.56e-6 ms
    assert layers.loc["0", "compute_ms"] == pytest.approx(128 / 1e12 * 1e3)  # 1.28e-7 ms
    assert layers["bound"].tolist() == ["memory", "memory"]
    assert math.isnan(layers.loc["0", "achieved_bandwidth_gbps"])  # no per-layer latency
    assert hw.total_bytes == TOTAL_BYTES
    assert hw.arithmetic_intensity == pytest.approx(FLOPS / TOTAL_BYTES)  # 0.4706
    assert hw.achieved_bandwidth_gbps == pytest.approx(408 / 1e-6 / 1e9)  # 0.408 GB/s
    assert hw.bandwidth_utilization == pytest.approx(0.408 / 100)
    assert hw.total_row["achieved_tflops"] == pytest.approx(192 / 1e-6 / 1e12)  # 1.92e-4
    assert hw.roofline_ms == pytest.approx((256 + 152) / 100e9 * 1e3)  # memory-bound layers
    assert hw.bound == "memory"
    assert hw.total_row["input_estimated"] and "previous row's output" in hw.notes[0]


def test_compute_bound_when_the_peak_is_low():
    df = hs.estimate_layerwise_stats(tiny(), batch_size=2, input_shape=(4,))
    hw = summarize_hardware(df, 0.001, 100, peak_tflops=0.001, input_bytes=32)
    # compute: 128 FLOPs / 1e9 FLOP/s = 1.28e-4 ms > memory 2.56e-6 ms
    assert hw.rows["bound"].tolist() == ["compute", "compute"]
    assert hw.roofline_ms == pytest.approx((128 + 64) / 1e9 * 1e3)
    assert hw.bound == "compute"


def test_without_peak_the_bound_is_unknown_and_input_defaults_to_zero():
    df = hs.estimate_layerwise_stats(tiny(), batch_size=2, input_shape=(4,))
    hw = summarize_hardware(df, latency_ms=0.001, memory_bandwidth_gbps=100)
    assert hw.total_bytes == TOTAL_BYTES - 32  # the model input is unknown: 0
    assert hw.bound == "unknown" and math.isnan(hw.total_row["compute_ms"])


def test_seed_small_cnn_batch_32():
    df = hs.estimate_layerwise_stats(SmallCNN(), batch_size=32, input_shape=(1, 28, 28))
    hw = summarize_hardware(
        df, latency_ms=4.2, memory_bandwidth_gbps=900, input_bytes=32 * 1 * 28 * 28 * 4
    )
    # conv1 640 + 100_352 + 1_605_632; conv2 18_560 + 1_605_632 + 802_816;
    # classifier 62_760 + 802_816 + 1_280
    assert hw.rows["bytes_moved"].tolist() == [1_706_624, 2_427_008, 866_856]
    assert hw.total_bytes == 5_000_488
    assert hw.achieved_bandwidth_gbps == pytest.approx(5_000_488 / 4.2e-3 / 1e9)  # 1.1906


def test_report_frame_uses_real_inputs_and_counts_innermost_rows():
    frame = hs.profile(tiny(), input_shape=(4,), batch_size=2).to_frame()
    hw = summarize_hardware(frame, 0.001, 100, input_bytes=999)  # ignored: inputs are known
    layers = hw.rows.set_index("hook_point")
    assert layers["counted"].to_dict() == {"(model)": False, "0": True, "1": True, "2": True}
    assert layers.loc["1", "bytes_moved"] == 64 + 64  # the ReLU reads and writes 2*8 floats
    assert hw.total_bytes == L0_BYTES + 128 + L2_BYTES  # 536
    assert not hw.total_row["input_estimated"]


def test_per_layer_latency_gives_per_layer_bandwidth():
    frame = pd.DataFrame(
        {
            "hook_point": ["a", "b"],
            "calls": [10, 10],
            "parameter_bytes": [100, 0],
            "input_bytes": [50, 500],
            "activation_bytes": [50, 500],
            "macs": [1000, 0],
            "latency_ms": [0.01, 0.02],
        }
    )
    hw = summarize_hardware(frame, memory_bandwidth_gbps=1.0)
    layers = hw.rows.set_index("hook_point")
    # a: 10 * 100 + 50 + 50 = 1100 B in 1e-5 s = 0.11 GB/s; b: 1000 B in 2e-5 s = 0.05 GB/s
    assert layers["achieved_bandwidth_gbps"].tolist() == pytest.approx([0.11, 0.05])
    assert layers["bandwidth_utilization"].tolist() == pytest.approx([0.11, 0.05])
    assert hw.total_row["latency_ms"] == pytest.approx(0.03)  # the rows' latencies summed
    assert hw.achieved_bandwidth_gbps == pytest.approx(2100 / 3e-5 / 1e9)  # 0.07 GB/s


def test_tracker_summary_counts_weights_per_call():
    model = tiny()
    with track(model, timing=False) as t:
        for _ in range(3):
            model(torch.zeros(2, 4))
    hw = summarize_hardware(t, memory_bandwidth_gbps=100)
    assert hw.total_row["calls"] == 3 * 3  # three innermost layers, three forwards
    assert hw.total_bytes == 3 * (L0_BYTES + 128 + L2_BYTES)  # 1608: weights read each time
    assert hw.total_row["latency_ms"] == pytest.approx(t.report.total("latency_ms"))


def test_precision_tradeoffs_scale_sizes_not_macs():
    df = hs.estimate_layerwise_stats(tiny(), batch_size=2, input_shape=(4,))
    table = precision_tradeoffs(
        df, 0.001, hardware="h100", input_bytes=32, precisions=("fp32", "bf16", "int8", "int4")
    )
    assert table["bytes_moved"].tolist() == [408, 204, 102, 51]  # x 1, 1/2, 1/4, 1/8
    assert table["flops"].tolist() == [192] * 4
    assert table["speedup"].tolist()[:3] == pytest.approx([1, 2, 4])  # memory-bound
    assert table["estimated_latency_ms"].tolist()[:3] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert math.isnan(table.loc[3, "speedup"])  # no int4 peak: rooflines not comparable
    assert table["compute_ms"].tolist()[:3] == pytest.approx(
        [192 / 67e12 * 1e3, 192 / 989.4e12 * 1e3, 192 / 1978.9e12 * 1e3]
    )
    assert table.loc[3, "bound"] == "unknown"  # Hopper has no INT4 tensor-core mode
    assert math.isnan(table.loc[1, "achieved_bandwidth_gbps"])  # measured in fp32 only


def test_precision_from_a_bf16_report():
    model = tiny().to(torch.bfloat16)
    report = hs.profile(model, inputs=torch.zeros(2, 4, dtype=torch.bfloat16))
    hw = summarize_hardware(report, 0.001, 100, precision="fp32")
    assert hw.source_precision == "bf16"
    # bf16: (80 + 16 + 32) + (32 + 32) + (36 + 32 + 8) = 268 B; in fp32 twice that
    assert hw.total_bytes == 2 * 268


def test_presets_and_precisions():
    assert hardware_spec("A100").memory_bandwidth_gbps == 2039.0
    assert hardware_spec("h100").peak("bfloat16") == 989.4
    assert hardware_spec("RTX4090").peak("int8") == 660.6
    assert canonical_precision(torch.float16) == "fp16"
    spec = measure_cpu(copy_mib=1, matmul_size=16, repeats=1)
    assert spec.memory_bandwidth_gbps > 0 and spec.peak("fp32") > 0
    custom = HardwareSpec("mine", 50.0, {"fp32": 1.0})
    assert (
        summarize_hardware(
            hs.estimate_layerwise_stats(tiny(), 2, (4,)), 1.0, hardware=custom
        ).peak_tflops
        == 1.0
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_bandwidth_gbps": None}, "memory_bandwidth_gbps must be a positive number"),
        ({"hardware": "tpu"}, "unknown hardware 'tpu'; presets are a100, h100, rtx4090, cpu"),
        ({"precision": "fp12"}, "unknown precision 'fp12'"),
        ({"latency_ms": -1.0}, "latency_ms must be positive"),
        ({"peak_tflops": 0.0}, "peak_tflops must be positive"),
    ],
)
def test_errors_name_the_problem(kwargs, message):
    df = hs.estimate_layerwise_stats(tiny(), 2, (4,))
    arguments = {"latency_ms": 1.0, "memory_bandwidth_gbps": 10.0, **kwargs}
    with pytest.raises(InputSpecError, match=message):
        summarize_hardware(df, **arguments)


def test_missing_columns_are_listed():
    with pytest.raises(InputSpecError, match="lacks column.*macs"):
        summarize_hardware(
            pd.DataFrame({"layer": ["a"], "parameter_bytes": [1], "activation_bytes": [1]}),
            1.0,
            1.0,
        )


def test_rendered_summary_table():
    df = hs.estimate_layerwise_stats(tiny(), batch_size=2, input_shape=(4,))
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(summarize_hardware(df, 0.001, 100, peak_tflops=1.0, input_bytes=32))
    output = console.file.getvalue()
    assert "hardware summary (fp32, 100 GB/s, 1 TFLOPS)" in output
    total = rows(output)["total"]
    # bytes 408 B, FLOPs 2 * 96, FLOP/B 192 / 408, latency 0.001 ms, 408 B / 1 µs, 0.408 of
    # 100 GB/s, roofline 408 B / 100 GB/s = 4.08 ns (above 192 FLOP / 1 TFLOPS = 0.192 ns)
    assert [total[h] for h in headers(output)[1:]] == [
        "2",
        "408 B",
        "192",
        "0.471",
        "1.00 µs",
        "408 MB/s",
        "0.4%",
        "4.08 ns",
        "memory",
    ]
