"""Plots: valid PNG/SVG files whose drawn data equals independently computed numbers."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import torch

pytest.importorskip("matplotlib", reason="plots need the [plot] extra (matplotlib)")

import hookstats as hs
from hookstats.errors import HookstatsError
from hookstats.plots import (
    layer_costs_figure,
    memory_vs_batch_figure,
    metric_history_figure,
    plot_layer_costs,
    plot_memory_vs_batch,
    plot_metric_history,
)

from models import SmallCNN

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIB = 2**20
# the seed's SmallCNN at batch 32: activation bytes and MACs per layer
SEED_BYTES = {
    "conv1": 32 * 16 * 28 * 28 * 4,  # 1_605_632
    "conv2": 32 * 32 * 14 * 14 * 4,  # 802_816
    "classifier": 32 * 10 * 4,
}  # 1_280
SEED_MACS = {
    "conv1": 32 * 16 * 28 * 28 * 1 * 3 * 3,  # 3_612_672
    "conv2": 32 * 32 * 14 * 14 * 16 * 3 * 3,  # 28_901_376
    "classifier": 32 * 1568 * 10,
}  # 501_760


def is_svg(path) -> bool:
    return ET.parse(path).getroot().tag.endswith("svg")


def bar_widths(axis) -> list[float]:
    return [patch.get_width() for patch in axis.patches]


@pytest.fixture(scope="module")
def report():
    return hs.profile(SmallCNN(), input_shape=(1, 28, 28), batch_size=32)


def test_layer_costs_from_report_and_seed_frame(report, tmp_path):
    for source in (report, hs.estimate_layerwise_stats(SmallCNN(), batch_size=32)):
        memory, macs = layer_costs_figure(source).axes
        assert [t.get_text() for t in memory.get_yticklabels()] == list(SEED_BYTES)
        assert bar_widths(memory) == pytest.approx([b / MIB for b in SEED_BYTES.values()])
        assert bar_widths(macs) == pytest.approx([m / 1e6 for m in SEED_MACS.values()])
    assert plot_layer_costs(report, tmp_path / "costs.png") == tmp_path / "costs.png"
    assert (tmp_path / "costs.png").read_bytes()[:8] == PNG_MAGIC
    plot_layer_costs(report.to_frame(), tmp_path / "costs.svg")
    assert is_svg(tmp_path / "costs.svg")


def test_metric_history_lines_follow_the_records(tmp_path):
    records = pd.DataFrame(
        {
            "step": [10, 10, 20, 20, 30, 30] * 2,
            "hook_point": ["(model)", "fc"] * 6,
            "metric": ["l2"] * 6 + ["l1"] * 6,
            "value": [1.0, 2.0, 1.5, 2.5, 1.7, 2.9, 5.0, 6.0, 5.5, 6.5, 5.7, 6.9],
        }
    )
    figure = metric_history_figure(records)
    assert [axis.get_ylabel() for axis in figure.axes] == ["l2", "l1"]
    fc = next(line for line in figure.axes[0].get_lines() if line.get_label() == "fc")
    assert list(fc.get_xdata()) == [10, 20, 30] and list(fc.get_ydata()) == [2.0, 2.5, 2.9]
    only = metric_history_figure(records, metric="l1", points="f*")
    assert [line.get_label() for line in only.axes[0].get_lines()] == ["fc"]
    two_runs = pd.concat([records.assign(run="a"), records.assign(run="b", value=0.0)])
    lines = metric_history_figure(two_runs, metric="l2").axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a: (model)", "a: fc", "b: (model)", "b: fc"]
    assert list(lines[3].get_ydata()) == [0.0, 0.0, 0.0]
    plot_metric_history(records, tmp_path / "history.svg", metric="l2")
    assert is_svg(tmp_path / "history.svg")
    with pytest.raises(HookstatsError, match=r"no metric \['l9'\] in the records"):
        metric_history_figure(records, metric="l9")
    with pytest.raises(HookstatsError, match=r"points \['conv\*'\] select no hook point"):
        metric_history_figure(records, points="conv*")
    with pytest.raises(HookstatsError, match=r"tidy records .*missing \['step'\]"):
        metric_history_figure(records.drop(columns="step"))


def test_memory_vs_batch_is_the_seed_example(tmp_path):
    sizes = [1, 8, 32]
    line = memory_vs_batch_figure(SmallCNN(), (1, 28, 28), sizes).axes[0].get_lines()[0]
    per_sample = (16 * 28 * 28 + 32 * 14 * 14 + 10) * 4  # 75_320 bytes
    assert list(line.get_xdata()) == sizes
    assert list(line.get_ydata()) == pytest.approx([b * per_sample / MIB for b in sizes])
    plot_memory_vs_batch(SmallCNN(), (1, 28, 28), tmp_path / "memory.png", [1, 2])
    assert (tmp_path / "memory.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_output_paths_and_sources(report, tmp_path):
    with pytest.raises(HookstatsError, match=r"image format of .*costs.jpeg.*\.png, \.svg, \.pdf"):
        plot_layer_costs(report, tmp_path / "costs.jpeg")
    with pytest.raises(HookstatsError, match="folder '.*nowhere' does not exist"):
        plot_layer_costs(report, tmp_path / "nowhere" / "costs.png")
    with pytest.raises(HookstatsError, match="layer costs need a Report"):
        layer_costs_figure(pd.DataFrame({"a": [1]}))


def test_without_matplotlib(report, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(HookstatsError, match=r"pip install hookstats\[plot\]"):
        plot_layer_costs(report, tmp_path / "costs.png")


def test_layer_costs_collapse_repeated_blocks_as_the_table_does():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    report = hs.profile(model, inputs=torch.zeros(1, 8, dtype=torch.long))
    frame = report.to_frame()
    leaves = frame[frame["is_leaf"] & (frame["calls"] > 0)]
    memory, macs = layer_costs_figure(report).axes
    labels = [t.get_text() for t in memory.get_yticklabels()]
    # wte, wpe, drop, each of the blocks' 9 kinds of leaf once, the attention's own matmuls
    # once, ln_f, lm_head: 3 + 9 + 1 + 2 = 15 bars instead of 32 leaves + 3 attentions
    assert len(leaves) == 3 + 3 * 9 + 2
    assert len(labels) == 15
    c_attn = labels.index("transformer.h.0–2.attn.c_attn ×3")
    assert bar_widths(macs)[c_attn] == pytest.approx(3 * 8 * 32 * 96 / 1e6)  # blocks·T·d·3d
    own = labels.index("transformer.h.0–2.attn (own ops) ×3")
    assert bar_widths(macs)[own] == pytest.approx(3 * 2 * 8 * 8 * 32 / 1e6)  # QK^T and AV
    assert bar_widths(memory)[own] == 0
    # the bars add up to the model's MACs, by hand: per block T·d·(3d + d + 4d + 4d) + 2·T²·d,
    # and the head T·d·V
    per_block = 8 * 32 * (3 * 32 + 32 + 4 * 32 + 4 * 32) + 2 * 8 * 8 * 32
    assert report.total("macs") == 3 * per_block + 8 * 32 * 50
    assert sum(bar_widths(macs)) == pytest.approx(report.total("macs") / 1e6)
    flat = [
        t.get_text() for t in layer_costs_figure(report, collapse=False).axes[0].get_yticklabels()
    ]
    assert len(flat) == len(leaves) + 3 and "transformer.h.1.attn (own ops)" in flat


def test_layer_costs_of_a_selection_keep_the_work_outside_it():
    report = hs.profile(SmallCNN(), input_shape=(1, 28, 28), batch_size=32, points="conv*")
    memory, macs = layer_costs_figure(report).axes
    labels = [t.get_text() for t in memory.get_yticklabels()]
    assert labels == ["conv1", "conv2", "(outside hook points)"]
    widths = bar_widths(macs)
    assert widths[:2] == pytest.approx([SEED_MACS["conv1"] / 1e6, SEED_MACS["conv2"] / 1e6])
    assert widths[2] == pytest.approx(SEED_MACS["classifier"] / 1e6)  # the Linear, unselected
    assert sum(widths) == pytest.approx(report.total("macs") / 1e6)
