"""The rendered track table (rows, numbers, order, totals) and when the live view renders."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from torch import nn

from hookstats import track

from models import MLP


def text_console(**kwargs) -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None, **kwargs)


def table_rows(output: str) -> dict[str, list[str]]:
    """Body rows of a rendered table, by their first cell."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃").split("│")]
        if len(cells) > 3 and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def run_mlp(console: Console, **kwargs):
    model = MLP((8, 16, 4))
    with track(model, console=console, timing=False, **kwargs) as t:
        for _ in range(2):
            model(torch.zeros(3, 8))
    return t, console.file.getvalue()


def test_final_table_rows_and_numbers_sorted_by_macs():
    _, output = run_mlp(text_console(), sort_by="macs")
    assert "hookstats track (cpu, float32)" in output
    rows = table_rows(output)
    # columns: type, calls, output shape, act./call, MACs/call, ms/call, total ms, % time
    assert rows["layers.0"][:5] == ["Linear", "2", "3×16", "192 B", "384"]  # 3*16*4 B; 3*8*16
    assert rows["layers.1"][:5] == ["Linear", "2", "3×4", "48 B", "192"]  # 3*4*4 B; 3*16*4
    assert rows["act"][:4] == ["ReLU", "4", "3×16 (+1)", "120 B"]  # (192 + 48) / 2 calls
    assert rows["(model)"][4] == "576"  # 384 + 192
    assert rows["layers.0"][5:7] == ["-", "-"]  # timing off: no latency
    # totals per forward: innermost activations 192 + 240 + 48 = 480 B, MACs 576
    assert rows["total / forward"][1:5] == ["10", "", "480 B", "576"]
    order = [name for name in rows if name in ("(model)", "layers.0", "layers.1", "act")]
    assert order == ["(model)", "layers.0", "layers.1", "act"]  # by MACs: 576, 384, 192, 0
    assert "2 forwards · 6 samples" in output


def test_top_rows_then_a_more_row_and_latency_sort():
    model = MLP((8, 16, 4))
    console = text_console()
    with track(model, console=console, top=2) as t:
        model(torch.zeros(1, 8))
    output = console.file.getvalue()
    rows = table_rows(output)
    assert "… 3 more" in output  # 5 points, 2 shown
    assert list(rows)[:2][0] == "(model)"  # the whole forward has the largest latency
    assert t.report.timing and "in forward" in output


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
    assert "hookstats track" in output and "1 forwards · 3 samples" in output


def test_rich_print_of_a_tracker():
    model = MLP((8, 16, 4))
    with track(model, timing=False) as t:
        model(torch.zeros(3, 8))
    console = text_console()
    console.print(t)
    assert "layers.0" in console.file.getvalue()


def test_metric_columns_are_rendered():
    model = MLP((8, 16, 4))
    with torch.no_grad():
        model.layers[0].weight.fill_(0.5)
    console = text_console()
    with track(model, points=nn.Linear, metrics=["l1"], console=console, timing=False):
        model(torch.zeros(1, 8))
    output = console.file.getvalue()
    header = next(line for line in output.splitlines() if "hook point" in line)
    assert header.strip("┃ ").endswith("l1")
    assert table_rows(output)["layers.0"][-1] == "64"  # ||W||_1 = 16 * 8 * 0.5
