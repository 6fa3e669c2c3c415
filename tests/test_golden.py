"""Golden-file tests of rendered tables (the torchinfo manner): fixed models, fixed widths.

Each rendering is compared with ``tests/golden/<name>.txt``. After an intended change, run
``python -m pytest tests/test_golden.py --update-golden`` and review the diff of the files.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

import hookstats as hs

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


CASES = {
    "profile_small_cnn": lambda: hs.profile(
        SmallCNN(16, 32), input_shape=(1, 28, 28), batch_size=32
    ),
    "profile_tiny_transformer": lambda: hs.profile(
        TinyTransformer(), inputs=torch.zeros(2, 16, dtype=torch.long)
    ),
    "track_small_cnn": fixed_track_report,
    "hardware_seed_a100": seed_hardware_summary,
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
