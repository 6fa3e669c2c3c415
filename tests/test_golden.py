"""Golden-file tests of rendered tables (the torchinfo manner): fixed models, fixed widths.

Each rendering is compared with ``tests/golden/<name>.txt``. After an intended change, run
``python -m pytest tests/test_golden.py --update-golden`` and review the diff of the files.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

import hookstats as hs
from hookstats.hardware import precision_table

from models import SmallCNN, TinyTransformer

GOLDEN = Path(__file__).parent / "golden"
WIDTHS = (80, 120)


def render(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def check(name: str, text: str, update: bool, folder: Path = GOLDEN) -> None:
    path = folder / f"{name}.txt"
    if update:
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}: run pytest with --update-golden and review it")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; see {path}"


def fixed_track_report() -> hs.TrackReport:
    """A track report with its clock fixed (timing off, 4 forwards of the small CNN)."""
    torch.manual_seed(0)
    model = SmallCNN(16, 32)
    with torch.no_grad(), hs.track(model, timing=False) as tracker:
        for _ in range(4):
            model(torch.zeros(8, 1, 28, 28))
    return dataclasses.replace(tracker.report, wall_s=2.0, busy_s=1.0)


def seed_hardware_summary() -> hs.HardwareSummary:
    seed = hs.estimate_layerwise_stats(SmallCNN(16, 32), batch_size=32)
    return hs.summarize_hardware(seed, latency_ms=4.2, hardware="a100", input_bytes=100_352)


def real_transformer(build) -> hs.Report:
    pytest.importorskip("transformers", reason="real transformer shapes need transformers")
    return hs.profile(build, inputs=torch.zeros(1, 128, dtype=torch.long), device="meta")


def timed_tiny_gpt2() -> hs.TrackReport:
    """A tracked 2-block GPT-2 with its clock fixed: each point's time is 1 ns per MAC plus
    10 µs per call (so a parent is never faster than its children), 4 forwards in 5 ms."""
    pytest.importorskip("transformers", reason="a GPT-2 needs transformers")
    from hf_models import tiny_gpt2

    torch.manual_seed(0)
    model = tiny_gpt2()
    with torch.no_grad(), hs.track(model) as tracker:
        for _ in range(4):
            model(torch.zeros(2, 16, dtype=torch.long))
    report = tracker.report
    fields = {f.name for f in dataclasses.fields(hs.instrument.PointStats)}

    def fixed(s):  # self time too, once PointStats records it: 1 ns per own MAC + 10 µs
        clock = {"latency_s": s.macs * 1e-9 + s.calls * 1e-5}
        if "self_latency_s" in fields:
            clock["self_latency_s"] = s.self_macs * 1e-9 + s.calls * 1e-5
        return dataclasses.replace(s, **clock)

    stats = {name: fixed(s) for name, s in report.stats.items()}
    return dataclasses.replace(report, stats=stats, busy_s=5e-3, wall_s=6e-3)


def cached_relu_summary() -> hs.HardwareSummary:
    """Per-layer latencies fixed so that the ReLU moves 1.53 MiB * 2 in 1 µs: 3.2 TB/s,
    above the A100's 2,039 GB/s DRAM peak with a working set far below its 40 MiB L2."""
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 28 * 28, 10))  # fmt: skip
    frame = hs.profile(model, input_shape=(1, 28, 28), batch_size=32).to_frame()
    frame["latency_ms"] = [0.05, 0.01, 0.001, 0.001, 0.02]
    return hs.summarize_hardware(frame, hardware="a100")


def seed_precision_table():
    seed = hs.estimate_layerwise_stats(SmallCNN(16, 32), batch_size=32)
    return precision_table(
        hs.precision_tradeoffs(seed, latency_ms=4.2, hardware="a100", input_bytes=100_352)
    )


@functools.cache
def gpt2_small_report() -> hs.Report:
    from hf_models import gpt2_small

    return real_transformer(gpt2_small)


@functools.cache
def llama_report() -> hs.Report:
    from hf_models import llama_32_layers

    return real_transformer(llama_32_layers)


CASES = {
    "profile_small_cnn": lambda: hs.profile(
        SmallCNN(16, 32), input_shape=(1, 28, 28), batch_size=32
    ),
    "profile_tiny_transformer": lambda: hs.profile(
        TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long)
    ),
    "track_small_cnn": fixed_track_report,
    "hardware_seed_a100": seed_hardware_summary,
    "profile_gpt2_small": gpt2_small_report,
    "profile_llama_32_layers": llama_report,
    "track_tiny_gpt2_timed": timed_tiny_gpt2,
    "hardware_cached_relu_a100": cached_relu_summary,
    "precision_seed_a100": seed_precision_table,
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_tables_match_golden_files(name, width, update_golden):
    check(f"{name}_{width}", render(CASES[name](), width), update_golden)


def test_golden_files_are_all_used():
    expected = {f"{name}_{width}.txt" for name in CASES for width in WIDTHS}
    assert {p.name for p in GOLDEN.glob("*.txt")} == expected


def test_a_changed_rendering_fails(tmp_path):
    (tmp_path / "x.txt").write_text("old\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="x changed"):
        check("x", "new\n", update=False, folder=tmp_path)
    check("x", "new\n", update=True, folder=tmp_path)
    check("x", "new\n", update=False, folder=tmp_path)
