"""Tables at any width: the tree and its collapsed blocks, numbers never cut, whole columns
dropped in a stated order, % columns, extra columns, options, HTML, and the hardware labels."""

from __future__ import annotations

import dataclasses
import html
import re

import pandas as pd
import pytest
import torch
from table_text import headers, render, rows
from torch import nn

import hookstats as hs
from hookstats.display import build_tree, mimebundle, walk
from hookstats.display.layout import Column, FittedTable, Grid, layout_notes
from hookstats.errors import TableError
from hookstats.hardware import precision_table
from hookstats.hardware.cache import cache_label
from hookstats.tracking.report import TrackReport

from models import MLP, SmallCNN, TinyTransformer

# -- the tree ------------------------------------------------------------------------------


def tree_of(names, **kwargs):
    records = [{"hook_point": n, "t": n.rsplit(".", 1)[-1].rstrip("0123456789")} for n in names]
    return [(node.label, level, node.count) for node, level in walk(build_tree(
        records, signature=lambda row: row["t"], **kwargs))]  # fmt: skip


def test_consecutive_identical_siblings_collapse_and_their_children_merge():
    names = ["(model)", "h", "h.0", "h.0.fc", "h.1", "h.1.fc", "h.2", "h.2.fc", "head"]
    records = [{"hook_point": n, "calls": 0 if n == "h" else 1, "t": "x"} for n in names]
    roots = build_tree(records, signature=lambda row: row["t"])
    shown = [(node.label, level, node.count) for node, level in walk(roots)]
    # the never-called container h is folded into its one group
    assert shown == [("(model)", 0, 1), ("h.0–2", 1, 3), ("fc", 2, 3), ("head", 1, 1)]
    group = next(node for node, _ in walk(roots) if node.repeat == 3)
    assert group.path == "h.0–2" and [r["hook_point"] for r in group.rows] == ["h.0", "h.1", "h.2"]
    assert [r["hook_point"] for r in group.children[0].rows] == ["h.0.fc", "h.1.fc", "h.2.fc"]


def test_no_collapse_across_a_gap_a_different_structure_or_plain_names():
    # h.1 has an extra child: runs are h.0 alone, then h.2-h.3; conv1/conv2 never collapse
    names = ["h.0", "h.0.fc", "h.1", "h.1.fc", "h.1.extra", "h.2", "h.2.fc", "h.3", "h.3.fc",
             "conv1", "conv2", "b.5", "b.7"]  # fmt: skip
    labels = [label for label, level, _ in tree_of(names) if level == 0]
    assert labels == ["h.0", "h.1", "h.2–3", "conv1", "conv2", "b.5", "b.7"]
    assert [label for label, level, _ in tree_of(names, collapse=False) if level == 0] == [
        "h.0", "h.1", "h.2", "h.3", "conv1", "conv2", "b.5", "b.7"
    ]  # fmt: skip


def test_never_called_container_sits_with_its_children_not_at_the_end():
    # execution order: the ModuleList "blocks" never ran, so the frame lists it last
    report = hs.profile(TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long))
    assert report.to_frame()["hook_point"].tolist()[-3:] == ["blocks", "blocks.0", "blocks.1"]
    table = rows(render(report.table(collapse=False, depth="all"), 160))
    order = [name.strip() for name in table]
    assert order[:4] == ["(model)", "embed", "blocks", "0"]  # then 0's children, then 1
    assert order.index("1") < order.index("head")


def test_unselected_parents_keep_the_path_in_the_label():
    ids = torch.zeros(2, 16, dtype=torch.long)
    report = hs.profile(TinyTransformer(), inputs=ids, points=nn.Linear)
    table = rows(render(report.table(collapse=False), 160))
    assert list(table)[:2] == ["blocks.0.attn.qkv", "blocks.0.attn.out"]


# -- numbers and widths ----------------------------------------------------------------------


def first_cell(line: str) -> str:
    return re.split(r"\s{2,}", line.strip())[0]


def cells_after_name(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())[1:]


@pytest.mark.parametrize("width", [80, 87, 96, 104, 120, 150])
def test_numbers_are_never_cut_at_any_width_from_80(width):
    report = hs.profile(TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long))
    wide = render(report.table(), 300)
    narrow = render(report.table(), width)
    assert max(len(line) for line in narrow.splitlines()) <= width
    wide_rows = {first_cell(line): line for line in wide.splitlines()}
    checked = 0
    for line in narrow.splitlines():
        name = first_cell(line)
        if name in wide_rows and name and "…" not in line:
            cells = cells_after_name(line)
            full = cells_after_name(wide_rows[name])
            assert all(cell in full for cell in cells), (line, wide_rows[name])
            checked += 1
    assert checked >= 12  # every body row and the total
    assert "…" not in narrow  # nothing was shortened at all here


def test_columns_are_dropped_whole_in_the_stated_order_and_the_note_says_which():
    report = hs.profile(TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long))
    order = ["type", "param mem", "calls", "output", "% params", "act. mem", "params", "% MACs"]
    table = report.table()
    seen = []
    for width in range(200, 20, -1):
        dropped = table.dropped(width)
        assert dropped == order[: len(dropped)]
        seen = dropped
        if dropped and width >= 60:
            note = " ".join(render(table, width).splitlines())
            assert f"not shown at {width} columns: {', '.join(dropped)}" in note
    assert seen == order  # at 20 columns only the name and the MACs are left
    assert headers(render(table, 30)) == ["hook point", "MACs"]


def test_percent_columns_against_hand_arithmetic():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 24))
    report = hs.profile(model, input_shape=(8,), batch_size=2)
    table = rows(render(report.table(collapse=False), 160))
    # MACs: 2*8*8 = 128, 128, 2*8*24 = 384; 640 in all. Params: 72, 72, 216; 360 in all.
    assert table["0"]["% MACs"] == "20.0%" and table["2"]["% MACs"] == "60.0%"
    assert table["0"]["% params"] == "20.0%" and table["2"]["% params"] == "60.0%"
    assert table["total"]["% MACs"] == "100.0%" and table["total"]["MACs"] == "640"
    grouped = rows(render(report.table(), 160))  # 0 and 1 collapse: sums, and summed shares
    assert grouped["0–1 ×2"]["MACs"] == "256" and grouped["0–1 ×2"]["% MACs"] == "40.0%"
    assert grouped["0–1 ×2"]["params"] == "144" and grouped["0–1 ×2"]["calls"] == "2"


def test_extra_numeric_columns_get_units_sums_and_totals(monkeypatch):
    """Columns other helpers add (backward_macs, saved_bytes, a metric) render sensibly."""
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])
    report = hs.profile(model, input_shape=(4,), batch_size=1)
    original = hs.Report.to_frame

    def with_extras(self):
        frame = original(self)
        frame["backward_macs"] = 2 * frame["macs"]
        frame["saved_bytes"] = 1024
        frame["act_rms"] = [0.5, 1.0, 2.0, 3.0]
        return frame

    monkeypatch.setattr(hs.Report, "to_frame", with_extras)
    table = rows(render(report.table(), 200))
    group = table["0–2 ×3"]
    assert group["backward MACs"] == "96"  # 2 * 3 * (1 * 4 * 4)
    assert group["saved bytes"] == "3.00 KiB"  # 3 * 1024, summed
    assert group["act rms"] == "2"  # the mean of 1, 2 and 3
    assert "backward MACs" not in table["total"]  # blank: Report.total has no such column yet


@pytest.mark.slow
def test_real_transformers_fit_in_a_screen():
    pytest.importorskip("transformers", reason="real transformer shapes need transformers")
    from hf_models import gpt2_small, llama_32_layers

    ids = torch.zeros(1, 128, dtype=torch.long)
    llama = hs.profile(llama_32_layers, inputs=ids, device="meta")
    lines = render(llama, 80).splitlines()
    assert len(lines) < 40  # was 430 (one row per hook point, 163 points, every block)
    assert any(line.strip().startswith("layers.0–31 ×32") for line in lines)
    assert "…" not in "".join(lines)
    flat = render(llama.table(collapse=False), 80).splitlines()
    assert len(flat) < 60  # depth chosen to fit 50 rows, and the note says so
    assert "depth 3 of 5 shown" in " ".join(flat)
    gpt2 = hs.profile(gpt2_small, inputs=ids, device="meta")
    table = rows(render(gpt2, 120))
    assert table["h.0–11 ×12"]["calls"] == "12"
    # a block: c_attn 128*768*2304 + c_proj 128*768*768 + c_fc, c_proj 2 * 128*768*3072
    # + attention 2 * 12 heads * 128*128*64 = 931_135_488; lm_head 128*768*50257
    assert gpt2.total("macs") == 12 * 931_135_488 + 4_940_464_128 == 16_114_089_984
    assert table["lm_head"]["MACs"] == "4.94 G"
    assert table["lm_head"]["% MACs"] == f"{4_940_464_128 / 16_114_089_984:.1%}"  # 30.7%
    assert table["h.0–11 ×12"]["MACs"] == "11.17 G"  # 12 * 931_135_488


# -- options -------------------------------------------------------------------------------


def test_depth_and_max_rows_options():
    report = hs.profile(TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long))
    shallow = [name.strip() for name in rows(render(report.table(depth=1), 160))]
    assert shallow == ["(model)", "embed", "blocks.0–1 ×2", "head", "total"]
    assert "deeper rows are counted in their parents" in render(report.table(depth=1), 160)
    capped = render(report.table(depth="all", max_rows=3), 160)
    assert "… 9 more rows" in capped
    for bad in (-1, "deep", 1.5, True):
        with pytest.raises(TableError, match="depth must be"):
            report.table(depth=bad)
    with pytest.raises(TableError, match="not columns of this table"):
        report.table(columns=["flops"])


def test_track_table_options_are_checked():
    model = MLP((8, 16, 4))
    with hs.track(model, timing=False) as t:
        model(torch.zeros(1, 8))
    with pytest.raises(TableError, match="sort_by must be"):
        t.table(sort_by="speed")
    with pytest.raises(TableError, match="top must be"):
        t.report.table(top=0)
    tree = rows(render(t.table(sort_by=None), 160))
    assert [name.strip() for name in tree][:4] == ["(model)", "layers", "0", "1"]


# -- track: self time ------------------------------------------------------------------------


def fake_self_time(monkeypatch, values):
    original = TrackReport.to_frame

    def with_self(self):
        frame = original(self)
        frame["self_latency_ms"] = [values.get(n, 0.0) for n in frame["hook_point"]]
        return frame

    monkeypatch.setattr(TrackReport, "to_frame", with_self)


def fixed_mlp_report() -> TrackReport:
    model = MLP((8, 16, 4))
    with hs.track(model) as t:
        model(torch.zeros(3, 8))
    inclusive = {"(model)": 10e-3, "layers.0": 4e-3, "layers.1": 2e-3, "act": 3e-3}
    report = t.report
    stats = {n: dataclasses.replace(s, latency_s=inclusive.get(n, 0.0)) for n, s in
             report.stats.items()}  # fmt: skip
    return dataclasses.replace(report, stats=stats, busy_s=10e-3)


def test_self_time_is_shown_next_to_total_time_and_the_shares_add_up(monkeypatch):
    report = fixed_mlp_report()
    fake_self_time(monkeypatch, {"(model)": 1.0, "layers.0": 4.0, "layers.1": 2.0, "act": 3.0})
    output = render(report.table(), 160)
    table = rows(output)
    assert list(table)[:4] == ["layers.0", "act", "layers.1", "(model)"]  # by self time
    assert table["(model)"]["self time"] == "1.00 ms" and table["(model)"]["total time"] == (
        "10.0 ms"
    )
    assert table["(model)"]["% time"] == "10.0%"  # 1 of the 10 ms in forward
    shares = [float(table[n]["% time"].rstrip("%")) for n in ("layers.0", "act", "layers.1")]
    assert shares == [40.0, 30.0, 20.0]  # with (model)'s 10%: 100%
    assert "spent in the hook point itself" in output
    by_total = rows(render(report.table(sort_by="total_time"), 160))
    assert next(iter(by_total)) == "(model)"


def test_without_self_time_the_table_says_time_is_inclusive(monkeypatch):
    original = TrackReport.to_frame  # a report without the column (before it is recorded)
    monkeypatch.setattr(
        TrackReport, "to_frame", lambda self: original(self).drop(columns="self_latency_ms",
                                                                 errors="ignore")
    )  # fmt: skip
    output = render(fixed_mlp_report().table(), 160)
    assert "self time" not in headers(output)
    assert rows(output)["(model)"]["% time"] == "100.0%"
    assert "includes nested hook points" in output


# -- hardware ------------------------------------------------------------------------------


def test_bandwidth_above_the_dram_peak_is_labelled_never_capped():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    frame = hs.profile(model, input_shape=(64,), batch_size=1024).to_frame()
    frame["latency_ms"] = [1.0, 0.5, 1e-4]
    summary = hs.summarize_hardware(frame, hardware="a100")
    table = rows(render(summary, 160))
    # ReLU: reads 1024*64*4 B and writes as much = 524_288 B in 0.1 µs = 5.24 TB/s
    assert table["1"]["achieved"] == "5.24 TB/s"
    assert table["1"]["BW util"] == f"{524_288 / 1e-7 / 2039e9:.1%}"  # 257.1%, not 100%
    assert table["1"]["bound"] == "cache"  # 512 KiB per call, inside the 40 MiB L2
    assert "fits the 40.00 MiB last-level cache" in render(summary, 200)
    assert cache_label(50 * 2**20, 40 * 2**20) == "overcount"
    assert cache_label(1.0, None) == "cache?"


def test_precision_table_says_why_a_figure_is_missing():
    seed = hs.estimate_layerwise_stats(SmallCNN(16, 32), batch_size=32)
    frame = hs.precision_tradeoffs(seed, latency_ms=4.2, memory_bandwidth_gbps=100,
                                   peak_tflops={"fp32": 10.0}, input_bytes=100_352)  # fmt: skip
    output = render(precision_table(frame), 160)
    table = rows(output, first="precision")
    assert table["fp32"]["speedup"] == "1.00×" and table["fp32"]["est. latency"] == "4.20 ms"
    assert table["bf16"]["speedup"] == "n/a" and table["bf16"]["compute roof"] == "n/a"
    assert "NaN" not in output and "speedup n/a for bf16, int8, int4" in output


# -- layout, notes and HTML ------------------------------------------------------------------


def test_notes_break_between_parts_never_inside_a_number():
    note = "4 forwards · 32 samples · 2.00 s wall · 16.0 samples/s · 16.51 MMAC/s"
    for width in range(20, 80):
        for line in layout_notes([note], width):
            assert not line.endswith(("16.51", "2.00")), line


def test_a_shrinking_name_column_keeps_the_end_of_a_path():
    grid = Grid("t", [Column("name", "hook point", "left", shrink=True, cut="left"),
                      Column("n", "MACs")], [{"name": "model.layers.0–31.mlp.down_proj ×32",
                                              "n": "1.23 G"}])  # fmt: skip
    line = render(FittedTable(grid), 30).splitlines()[-1]
    assert line.startswith("…") and "down_proj ×32" in line and line.endswith("1.23 G")


def test_every_result_object_has_html_for_notebooks():
    model = MLP((8, 16, 4))
    report = hs.profile(model, input_shape=(8,), batch_size=3)
    with hs.track(model, timing=False) as t:
        model(torch.zeros(3, 8))
    summary = hs.SweepSummary("r", total=1, done=1, seconds=0.1)
    hardware = hs.summarize_hardware(report, latency_ms=1.0, hardware="a100")
    for thing, text in [(report, "hookstats profile"), (t, "hookstats track"),
                        (t.report, "hookstats track"), (hardware, "hardware summary"),
                        (summary, "sweep 'r'"), (report.table(), "hookstats profile")]:  # fmt: skip
        bundle = thing._repr_mimebundle_()
        assert bundle["text/html"].startswith("<pre") and text in html.unescape(bundle["text/html"])
        assert text in bundle["text/plain"]
    assert "576" in report._repr_html_()  # 3*8*16 + 3*16*4 MACs
    assert mimebundle(pd.DataFrame({"a": [1]}).to_string())["text/plain"].strip().endswith("1")


def test_track_of_kv_cache_generation_reads_at_80_columns():
    """The field: generate() with a KV cache under inference_mode, the table at 80 columns."""
    pytest.importorskip("transformers", reason="a GPT-2 needs transformers")
    from hf_models import tiny_gpt2

    torch.manual_seed(0)
    model = tiny_gpt2(layers=3)
    ids = torch.randint(0, 100, (2, 8))
    with torch.inference_mode(), hs.track(model, timing=False) as t:
        model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    output = render(t, 80)
    assert max(len(line) for line in output.splitlines()) <= 80
    table = rows(output)
    assert table["mlp.c_fc ×3"]["calls"] == "12"  # 3 blocks * 4 forwards (1 prefill, 3 steps)
    # own MACs of the 3 c_fc over the block: 3 * (2*8 + 3 * 2*1 tokens) * 32 * 128 = 270_336
    assert t.report.to_frame().query("hook_point.str.endswith('mlp.c_fc')")["macs"].sum() == (
        270_336
    )
    assert "…" not in "".join(line for line in output.splitlines() if "more" not in line)
