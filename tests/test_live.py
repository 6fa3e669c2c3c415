"""The rendered track table (rows, numbers, order, totals) and when the live view renders."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from table_text import rows
from torch import nn

from hookstats import track

from models import MLP


def text_console(**kwargs) -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None, **kwargs)


def run_mlp(console: Console, **kwargs):
    model = MLP((8, 16, 4))
    with track(model, console=console, timing=False, **kwargs) as t:
        for _ in range(2):
            model(torch.zeros(3, 8))
    return t, console.file.getvalue()


def test_final_table_rows_and_numbers_sorted_by_macs():
    _, output = run_mlp(text_console(), sort_by="macs")
    assert "hookstats track (cpu, float32)" in output
    table = rows(output)
    assert table["layers.0"]["type"] == "Linear" and table["layers.0"]["calls"] == "2"
    assert table["layers.0"]["output shape"] == "3×16"
    assert table["layers.0"]["act./call"] == "192 B"  # 3 * 16 * 4 B
    assert table["layers.0"]["MACs/call"] == "384"  # 3 * 8 * 16
    assert table["layers.1"]["act./call"] == "48 B"  # 3 * 4 * 4 B
    assert table["layers.1"]["MACs/call"] == "192"  # 3 * 16 * 4
    assert table["act"]["output shape"] == "3×16 (+1)"
    assert table["act"]["act./call"] == "120 B"  # (192 + 48) / 2 calls
    assert table["(model)"]["MACs/call"] == "576"  # 384 + 192
    assert table["layers.0"]["% MACs"] == "66.7%"  # 384 / 576 of its own
    assert table["(model)"]["% MACs"] == "0.0%"  # none of its own
    assert "time/call" not in output  # timing off: no time columns
    # totals per forward: innermost activations 192 + 240 + 48 = 480 B, MACs 576
    total = table["total / forward"]
    assert (total["calls"], total["act./call"], total["MACs/call"]) == ("10", "480 B", "576")
    order = [name for name in table if name in ("(model)", "layers.0", "layers.1", "act")]
    assert order == ["layers.0", "layers.1", "(model)", "act"]  # own MACs 384, 192, 0, 0
    assert "layers" not in table  # never called: in the tree, not in a sorted list
    assert "2 forwards · 6 samples" in output and "timing=False" in output


def test_top_rows_then_a_more_row_and_latency_sort():
    model = MLP((8, 16, 4))
    console = text_console()
    with track(model, console=console, top=2) as t:
        model(torch.zeros(1, 8))
    output = console.file.getvalue()
    table = rows(output)
    assert "… 2 more" in output  # 4 called points, 2 shown
    assert t.report.timing and "in forward" in output
    if "self_latency_ms" in t.report.to_frame().columns:  # sorted by the time in each point
        assert "self time" in output and "spent in the hook point itself" in output
    else:  # inclusive time until self time is recorded: the whole forward comes first
        assert next(iter(table)) == "(model)" and "self time was not recorded" in output


def test_no_console_and_no_live_prints_nothing(capsys):
    model = nn.Linear(4, 2)
    with track(model):
        model(torch.zeros(1, 4))
    assert capsys.readouterr().out == ""


def test_live_on_a_non_terminal_prints_one_final_table():
    console = text_console()
    t, output = run_mlp(console, live=True)
    assert not t._view.is_live
    assert output.count("hookstats track") == 1
    assert "\x1b[?25l" not in output  # no cursor control: nothing was animated


def test_live_on_a_terminal_runs_a_live_display():
    console = text_console(force_terminal=True)
    model = MLP((8, 16, 4))
    with track(model, live=True, console=console, timing=False) as t:
        assert t._view.is_live
        model(torch.zeros(3, 8))
    assert not t._view.is_live
    output = console.file.getvalue()
    assert "\x1b[?25l" in output  # rich's Live hides the cursor while it refreshes
    assert "hookstats track" in output and "1 forward · 3 samples" in output


def test_rich_print_of_a_tracker_uses_the_tracks_top_and_sort_by():
    model = MLP((8, 16, 4))
    with track(model, timing=False, top=1, sort_by="macs") as t:
        model(torch.zeros(3, 8))
    console = text_console()
    console.print(t)
    output = console.file.getvalue()
    assert list(rows(output))[:2] == ["layers.0", "… 3 more"]  # top=1, by MACs
    console = text_console()
    console.print(t.table(top=3))
    assert "… 1 more" in console.file.getvalue()


def test_metric_columns_are_rendered():
    model = MLP((8, 16, 4))
    with torch.no_grad():
        model.layers[0].weight.fill_(0.5)
    console = text_console()
    with track(model, points=nn.Linear, metrics=["l1"], console=console, timing=False):
        model(torch.zeros(1, 8))
    output = console.file.getvalue()
    assert rows(output)["layers.0"]["l1"] == "64"  # ||W||_1 = 16 * 8 * 0.5
