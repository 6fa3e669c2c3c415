"""Peak memory of ``sv_mean``/``sv_var`` on one large matrix, against the matrix's own size.

Run: ``python benchmarks/sv_memory.py [rows] [cols]`` (default 50000 x 8192, float32: 1.64 GB).
The matrix is made first; the process's peak RSS is then reset (``/proc/self/clear_refs``) and
read back (``VmHWM``) after ``compute_metrics``. Reported: the peak RSS of the whole process
divided by the matrix's bytes (the issue's "2.2x the matrix size"), and the extra memory the
call needed on top of what the process held before it. Linux only.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def main() -> None:
    rows, cols = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (50_000, 8192)
    import hookstats as hs

    torch.manual_seed(0)
    layer = nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        layer.weight.normal_(0, 0.02)
    matrix = layer.weight.numel() * 4
    before = rss_kib("VmRSS:") * 1024
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    frame = hs.compute_metrics(layer, None, ["sv_mean", "sv_var"])
    seconds = time.perf_counter() - start
    peak = rss_kib("VmHWM:") * 1024
    print(f"matrix {rows}x{cols} float32: {matrix / 2**30:.2f} GiB; {seconds:.1f} s")
    print(f"peak RSS {peak / 2**30:.2f} GiB = {peak / matrix:.2f}x the matrix")
    print(
        f"extra over the process before the call: {(peak - before) / 2**30:.2f} GiB "
        f"= {(peak - before) / matrix:.2f}x the matrix"
    )
    print(frame[frame.hook_point == "(model)"][["metric", "value"]].to_string(index=False))


if __name__ == "__main__":
    main()
