"""The command line: each sub-command's output against the library, and one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import METRICS, reference, write_checkpoints

import hookstats as hs
from hookstats.cli import main, parse_shape
from hookstats.runs.store import MetricStore

from models import SmallCNN

ROOT = Path(__file__).parents[1]
CNN = f"{ROOT / 'examples' / 'small_cnn.py'}:build_model"
MLP_SPEC = "sweep_helpers:build_mlp"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich tables do not wrap long tmp paths


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_table_and_csv_match_the_library(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "profile",
        CNN,
        "--input-shape",
        "1,1,28,28",
        "--batch-size",
        "32",
        "--csv",
        tmp_path / "costs.csv",
    )
    assert code == 0
    assert "conv1" in out and "28.90 M" in out  # conv2: 32*32*14*14*16*9 = 28_901_376 MACs
    expected = hs.profile(SmallCNN(), input_shape=(1, 28, 28), batch_size=32).to_frame()
    written = pd.read_csv(tmp_path / "costs.csv")
    assert written["self_macs"].tolist() == expected["self_macs"].tolist()
    assert written["activation_bytes"].tolist() == expected["activation_bytes"].tolist()


def test_metrics_of_a_checkpoint(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    path = write_checkpoints(tmp_path, [7])[0]
    code, out, _ = run_cli(
        capsys,
        "metrics",
        MLP_SPEC,
        "--checkpoint",
        path,
        "--metrics",
        ",".join(METRICS),
        "--csv",
        tmp_path / "m.csv",
    )
    assert code == 0 and "layers.0" in out
    expected = reference([path], "r")[["hook_point", "metric", "value"]]
    written = pd.read_csv(tmp_path / "m.csv", keep_default_na=False, na_values={"value": [""]})
    pd.testing.assert_frame_equal(
        written[["hook_point", "metric", "value"]], expected, check_exact=False, rtol=1e-12
    )  # CSV text round trip


def test_sweep_then_show_then_plot(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="plot needs the [plot] extra")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    paths = write_checkpoints(tmp_path / "ckpts", [10, 20])
    (tmp_path / "ckpts" / "ckpt_00030.pt").write_bytes(b"")
    store = tmp_path / "m.sqlite"
    code, out, _ = run_cli(
        capsys,
        "sweep",
        MLP_SPEC,
        str(tmp_path / "ckpts" / "*.pt"),
        "--store",
        store,
        "--run",
        "r",
        "--metrics",
        ",".join(METRICS),
        "--no-progress",
    )
    assert code == 1  # one checkpoint failed
    assert "failed" in out and "is empty (0 bytes)" in out
    with MetricStore(store, read_only=True) as opened:
        pd.testing.assert_frame_equal(
            opened.to_frame(run="r"), reference(paths, "r"), check_exact=True
        )
    code, out, _ = run_cli(capsys, "show", store)  # run, created, checkpoints, steps, failures
    assert code == 0 and re.search(r"│ r +│ 20\S+ +│ +2 │ +10 │ +20 │ +1 │", out)
    code, out, _ = run_cli(capsys, "show", store, "--run", "r", "--metric", "l2")
    l2 = reference(paths, "r").query("hook_point == '(model)' and metric == 'l2'")["value"]
    assert code == 0 and f"{l2.iloc[0]:.6g}" in out and f"{l2.iloc[1]:.6g}" in out
    code, out, _ = run_cli(capsys, "show", store, "--failures")
    assert code == 0 and "ckpt_00030.pt" in out
    code, _, _ = run_cli(capsys, "show", store, "--run", "r", "--csv", tmp_path / "r.csv")
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(reference(paths, "r"))
    code, _, _ = run_cli(
        capsys, "plot", "history", store, "--run", "r", "--metric", "l2", "-o", tmp_path / "l2.svg"
    )
    assert code == 0 and (tmp_path / "l2.svg").read_text().lstrip().startswith("<?xml")


def test_plot_costs_and_memory(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="plot needs the [plot] extra")
    code, _, _ = run_cli(
        capsys, "plot", "costs", CNN, "--input-shape", "32,1,28,28", "-o", tmp_path / "costs.png"
    )
    assert code == 0 and (tmp_path / "costs.png").read_bytes()[:4] == b"\x89PNG"
    flat = tmp_path / "flat.svg"
    code, _, _ = run_cli(
        capsys, "plot", "costs", CNN, "--input-shape", "32,1,28,28", "-o", flat, "--no-collapse"
    )
    assert code == 0 and flat.read_text().count("conv2") >= 1
    code, _, _ = run_cli(
        capsys,
        "plot",
        "memory",
        CNN,
        "--input-shape",
        "1,1,28,28",
        "--batch-sizes",
        "1,4",
        "-o",
        tmp_path / "memory.png",
    )
    assert code == 0 and (tmp_path / "memory.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "nope.py:build", "--input-shape", "1,2"], "model file 'nope.py' not found"),
        (
            ["profile", "no_such_pkg_xyz:build", "--input-shape", "1,2"],
            "cannot import module 'no_such_pkg_xyz'",
        ),
        (["profile", "torch.nn", "--input-shape", "1,2"], "names no factory"),
        (["profile", "torch.nn:Nothing", "--input-shape", "1,2"], "has no callable 'Nothing'"),
        (
            ["profile", "torch.nn:Linear", "--input-shape", "1,2"],
            "factory 'torch.nn:Linear' raised",
        ),
        (["profile", CNN, "--input-shape", "1,x"], "'1,x' is not a shape"),
        (["profile", CNN, "--input-shape", "1,3,28,28"], "forward raised RuntimeError in module"),
        (["show", "missing.sqlite"], "store 'missing.sqlite' not found"),
        (["plot", "costs", CNN, "-o", "x.png"], "plot costs needs --input-shape"),
        (["sweep", CNN, "nothing/*.pt", "--store", "m.sqlite", "--run", "r"], "matches no"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("hookstats: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_show_unknown_run(capsys, tmp_path):
    MetricStore(tmp_path / "m.sqlite").close()
    code, _, err = run_cli(capsys, "show", tmp_path / "m.sqlite", "--run", "x")
    assert code == 2 and "no run 'x' in the store" in err


@pytest.mark.parametrize("command", ["profile", "metrics", "sweep", "show", "plot"])
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"examples:\n  hookstats {command}" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "hookstats", "show", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "hookstats show runs.sqlite --failures" in done.stdout


def test_parse_shape():
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape(" 32, 1,28 ,28 ") == (32, 1, 28, 28)


def test_build_model_for_workers_is_picklable():
    import functools
    import pickle

    from hookstats.cli import build_from_spec

    build = pickle.loads(pickle.dumps(functools.partial(build_from_spec, CNN)))
    assert type(build()).__name__ == "SmallCNN"
