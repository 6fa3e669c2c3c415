"""The command line for token models and tree tables: ``profile --input-dtype int64 --vocab``,
``--depth`` and ``--no-collapse`` on ``profile`` and ``show``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from table_text import rows
from torch import nn

import hookstats as hs
from hookstats.cli import main
from hookstats.cli.tables import token_inputs
from hookstats.runs.store import MetricStore

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.syspath_prepend(str(HERE))


def run_cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_language_model_profiles_from_token_ids(capsys):
    pytest.importorskip("transformers", reason="a GPT-2 needs transformers")
    from hf_models import tiny_gpt2

    args = ("profile", "hf_models:tiny_gpt2", "--input-shape", "2,16", "--input-dtype", "int64")
    code, out, _ = run_cli(capsys, *args, "--vocab", "100")
    assert code == 0
    expected = hs.profile(tiny_gpt2(), inputs=torch.zeros(2, 16, dtype=torch.long))
    table = rows(out)
    assert table["total"]["MACs"] == hs.units.format_count(expected.total("macs"))
    assert "h.0–1 ×2" in table and table["h.0–1 ×2"]["calls"] == "2"
    code, out, _ = run_cli(capsys, *args, "--no-collapse", "--device", "meta")  # vocab: 64
    names = [name.strip() for name in rows(out)]
    assert code == 0 and "h" in names and "0" in names and "1" in names
    code, out, _ = run_cli(capsys, *args, "--depth", "1")
    names = [name.strip() for name in rows(out)]
    assert code == 0 and names == ["(model)", "transformer", "lm_head", "total"]
    assert "depth 1 of 4 shown" in out


def test_token_ids_stay_inside_every_embedding():
    model = nn.Sequential(nn.Embedding(50, 4), nn.Embedding(7, 4))
    ids = token_inputs(model, (4, 100), "int64", None)
    assert ids.dtype == torch.int64 and ids.shape == (4, 100) and int(ids.max()) < 7
    assert token_inputs(model, (1, 3), "int32", 2).dtype == torch.int32


def test_token_ids_without_a_vocabulary_are_a_clear_error(capsys):
    code, _, err = run_cli(
        capsys, "profile", "torch.nn:Identity", "--input-shape", "1,4", "--input-dtype", "int64"
    )
    assert code == 2 and "pass --vocab N" in err
    with pytest.raises(SystemExit):  # argparse: "expected a number of levels ... or 'all'"
        main(["profile", "torch.nn:Identity", "--input-shape", "1,4", "--depth", "deep"])
    assert "expected a number of levels" in capsys.readouterr().err


def test_show_a_run_as_a_tree_with_depth_and_collapse(capsys, tmp_path):
    store = tmp_path / "m.sqlite"
    names = ["(model)", "blocks.0", "blocks.0.fc", "blocks.1", "blocks.1.fc", "head"]
    values = [10.0, 1.0, 0.5, 3.0, 1.5, 2.0]
    with MetricStore(store) as opened:
        frame = pd.DataFrame({"hook_point": names, "metric": "l2", "value": values})
        opened.write_checkpoint("r", "c1", 1, frame)
    code, out, _ = run_cli(capsys, "show", store, "--run", "r", "--point", "*")
    table = rows(out, first="step")
    assert code == 0 and table["1"]["hook point"] == "(model)"
    body = [line.split() for line in out.splitlines()]
    # ×2 rows show the mean: (1 + 3) / 2 = 2 for the blocks, (0.5 + 1.5) / 2 = 1 for fc
    assert ["blocks.0–1", "×2", "2"] in body and ["fc", "1"] in body
    code, out, _ = run_cli(capsys, "show", store, "--run", "r", "--point", "*", "--no-collapse")
    assert "blocks.0" in out and "×" not in out.split("\n\n")[0]
    code, out, _ = run_cli(capsys, "show", store, "--run", "r", "--point", "*", "--depth", "0")
    assert "head" not in out and "deeper rows are counted" in out
