"""Reading rendered hookstats tables back in tests: cells by column header.

Tables have no vertical lines, so a cell is found by its header: a right-justified cell ends
where its header ends, a left-justified one starts where its header starts.
"""

from __future__ import annotations

import io
import re

from rich.console import Console

_TOKEN = re.compile(r"\S+(?: \S+)*")


def render(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def header_line(output: str, first: str = "hook point") -> int:
    lines = output.splitlines()
    return next(i for i, line in enumerate(lines) if line.startswith(first))


def headers(output: str, first: str = "hook point") -> list[str]:
    return [m.group() for m in _TOKEN.finditer(output.splitlines()[header_line(output, first)])]


def rows(output: str, first: str = "hook point") -> dict[str, dict[str, str]]:
    """Body and total rows by their first cell (stripped), each a dict header -> cell."""
    lines = output.splitlines()
    h = header_line(output, first)
    spans = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(lines[h])]
    found: dict[str, dict[str, str]] = {}
    for line in lines[h + 2 :]:
        if not line.strip():
            continue
        cells: dict[str, str] = {}
        for match in _TOKEN.finditer(line):
            for start, end, name in spans:
                if match.end() == end or match.start() == start:
                    cells[name] = match.group()
                    break
            else:
                if match.start() < spans[1][0]:  # an indented name
                    cells[spans[0][2]] = match.group()
        name = cells.get(spans[0][2], "")
        if not name or (len(cells) < 2 and not name.startswith("…")):
            break  # the notes under the table
        found[cells[spans[0][2]]] = cells
    return found
