"""A real notebook, executed by a Jupyter kernel (nbclient + ipykernel): a bare ``report``,
``tracker``, ``t.report``, hardware summary, sweep summary and metric frame at the end of a cell
each display as HTML, with the numbers of the table in it."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook test needs nbformat (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="notebook test needs nbclient (dev extra)")
pytest.importorskip("ipykernel", reason="notebook test needs ipykernel (dev extra)")

HERE = Path(__file__).parent

SETUP = f"""
import sys, torch, pandas as pd
sys.path.insert(0, {str(HERE)!r})
import hookstats as hs
from models import MLP
model = MLP((8, 16, 4))
"""
CELLS = {
    "report": "report = hs.profile(model, input_shape=(8,), batch_size=3)\nreport",
    "tracker": ("with hs.track(model, timing=False) as t:\n    _ = model(torch.zeros(3, 8))\nt"),
    "track_report": "t.report",
    "hardware": "hs.summarize_hardware(report, latency_ms=1.0, hardware='a100')",
    "sweep": (
        "hs.SweepSummary('r', total=2, done=1, failed=1, seconds=0.5,\n"
        "                failures=[('c.pt', 'CheckpointError: bad')])"
    ),
    "metrics": "hs.compute_metrics(model, None, ['l2'])",
    "table": "report.table(depth=1)",
}


@pytest.mark.slow
def test_objects_display_as_html_in_a_notebook(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SETUP)] + [
        nbformat.v4.new_code_cell(source) for source in CELLS.values()
    ]
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    html = {}
    for name, cell in zip(CELLS, notebook.cells[1:], strict=True):
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert results, f"{name}: no result displayed ({cell.outputs})"
        data = results[0]["data"]
        assert "text/html" in data, f"{name} displays no HTML: {sorted(data)}"
        html[name] = data["text/html"]
    # the MLP: layers.0 is 3*8*16 = 384 MACs, layers.1 3*16*4 = 192; 576 in all
    assert "<pre" in html["report"] and "hookstats profile" in html["report"]
    assert "576" in html["report"] and "384" in html["report"]
    assert "hookstats track" in html["tracker"] and "hookstats track" in html["track_report"]
    assert "hardware summary" in html["hardware"]
    assert "sweep" in html["sweep"] and "CheckpointError: bad" in html["sweep"]
    assert "<table" in html["metrics"]  # pandas' own HTML for the metric frame
    assert "hookstats profile" in html["table"]
    plain = notebook.cells[1].outputs[0]["data"]["text/plain"]
    assert "Report(" not in plain and "hookstats profile" in plain  # not the dataclass repr
