"""The live example in a pseudo-terminal: the live table appears and the process exits cleanly."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "live_inference.py"


def run_in_pty(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``command`` with a pty as stdin/stdout/stderr; return its exit code and output."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True
    )
    os.close(terminal)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the example did not exit within {timeout} s")
    finally:
        os.close(controller)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_live_example_renders_in_a_terminal_and_exits_cleanly():
    env = {
        **os.environ,
        "HOOKSTATS_EXAMPLE_SECONDS": "0.8",
        "TERM": "xterm-256color",
        "COLUMNS": "80",
        "LINES": "40",
    }
    env.pop("NO_COLOR", None)
    code, output = run_in_pty([sys.executable, str(EXAMPLE)], env, timeout=90)
    assert code == 0, output[-2000:]
    assert "\x1b[?25l" in output  # rich's Live hid the cursor: the table was animated
    assert "\x1b[?25h" in output  # ... and showed it again when the block exited
    assert "hookstats track (cpu, float32)" in output
    assert "forwards" in output and "samples/s" in output
    assert "hardware summary" in output and "Traceback" not in output
    # 80 columns: whole columns are dropped (and named), the precision what-if is a table
    assert "not shown at 80 columns" in output
    assert "precision what-if" in output and "NaN" not in output
