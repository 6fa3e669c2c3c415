"""The README stays true: its test command is the one CI runs, and the table it shows for GPT-2
small is the rendering the golden test pins (tests/golden/profile_gpt2_small_80.txt)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_second_command_is_what_ci_runs():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    install, tests = first_block.group(1).strip().splitlines()
    assert install.startswith("pip install torch==2.13.0 && pip install -e")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == tests == "python -m pytest -q"


def test_the_gpt2_table_is_the_golden_rendering():
    golden = (Path(__file__).parent / "golden" / "profile_gpt2_small_80.txt").read_text()
    blocks = re.findall(r"```text\n(.*?)```", README, re.S)
    assert any(block.strip("\n") == golden.strip("\n") for block in blocks)
