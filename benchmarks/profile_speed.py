"""How fast is ``hs.profile`` next to the plain forward and to peer tools, and is it exact?

Prints one table: per model, the median wall time of each tool, its ratio to
``torch.utils.flop_counter.FlopCounterMode`` and to the uninstrumented forward, and the MACs it
reports (peers undercount what they have no rule for). Peers (fvcore, ptflops, thop, torchinfo)
are used when installed (``pip install fvcore ptflops thop torchinfo``). Then a Llama-style 70B
configuration is profiled on the meta device in a child process: wall time against
FlopCounterMode and the child's peak RSS.

Targets (issue 2): within 1.5x of FlopCounterMode's time on every model, the 70B meta profile
included, and under 1 GiB peak RSS for the 70B run.

Run:  python benchmarks/profile_speed.py [--repeat 5] [--skip-70b]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hookstats as hs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hf_models import LLAMA_70B

from models import SmallCNN, TinyTransformer


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _flop_counter(model: nn.Module, args: tuple) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops() // 2


def _peers(model: nn.Module, args: tuple) -> dict[str, Callable[[], int | None]]:
    peers: dict[str, Callable[[], int | None]] = {}
    quiet = contextlib.redirect_stdout(io.StringIO())
    with contextlib.suppress(ImportError):
        from fvcore.nn import FlopCountAnalysis

        def fvcore_count() -> int:
            analysis = FlopCountAnalysis(model, args)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())

        peers["fvcore"] = fvcore_count
    with contextlib.suppress(ImportError):
        import thop

        def thop_count() -> int:
            with contextlib.redirect_stdout(io.StringIO()):
                macs, _ = thop.profile(model, inputs=args, verbose=False)
            for m in model.modules():  # thop leaves total_ops/total_params buffers behind
                for name in ("total_ops", "total_params"):
                    m._buffers.pop(name, None)
            return int(macs)

        peers["thop"] = thop_count
    with contextlib.suppress(ImportError):
        import torchinfo

        def torchinfo_count() -> int:
            with quiet:
                stats = torchinfo.summary(model, input_data=list(args), verbose=0)
            return int(stats.total_mult_adds)

        peers["torchinfo"] = torchinfo_count
    with contextlib.suppress(ImportError):
        from ptflops import get_model_complexity_info

        def ptflops_count() -> int | None:
            with contextlib.redirect_stdout(io.StringIO()):
                macs, _ = get_model_complexity_info(
                    model,
                    tuple(args[0].shape),
                    as_strings=False,
                    print_per_layer_stat=False,
                    input_constructor=lambda _shape: args[0],
                    backend="pytorch",
                )
            return None if macs is None else int(macs)

        peers["ptflops"] = ptflops_count
    return peers


def _models() -> list[tuple[str, nn.Module, tuple]]:
    models = [
        ("SmallCNN b32", SmallCNN(16, 32), (torch.randn(32, 1, 28, 28),)),
        (
            "TinyTransformer b8x64",
            TinyTransformer(vocab=1000, dim=128, heads=4, layers=4),
            (torch.randint(0, 1000, (8, 64)),),
        ),
        ("LSTM(300,512,2) T100 b2", nn.LSTM(300, 512, 2), (torch.randn(100, 2, 300),)),
    ]
    try:
        from transformers import GPT2Config, GPT2LMHeadModel

        gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=4, bos_token_id=0, eos_token_id=0))
        models.append(("GPT-2 (4 layers) T128", gpt2, (torch.randint(0, 50257, (1, 128)),)))
    except ImportError:
        pass
    return models


def _bench_model(name: str, model: nn.Module, args: tuple, repeat: int) -> list[list[str]]:
    model.eval()
    with torch.no_grad():
        plain, _ = _timed(lambda: model(*args), repeat)
    rows = []
    reference, flops_macs = _timed(lambda: _flop_counter(model, args), repeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, report = _timed(lambda: hs.profile(model, inputs=args), repeat)
    rows.append([name, "hookstats", ours, report.total("macs")])  # type: ignore[union-attr]
    rows.append([name, "FlopCounterMode", reference, flops_macs])
    for peer, count in _peers(model, args).items():
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                seconds, macs = _timed(count, repeat)
        except Exception as exc:  # a peer that cannot handle the model is reported, not fatal
            rows.append([name, peer, None, f"failed: {type(exc).__name__}"])
            continue
        rows.append([name, peer, seconds, macs])
    return [
        [n, tool, _fmt_s(t), _ratio(t, reference), _ratio(t, plain), _fmt_macs(m)]
        for n, tool, t, m in rows
    ]


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _ratio(seconds: float | None, base: float) -> str:
    return "-" if seconds is None else f"{seconds / base:.2f}x"


def _fmt_macs(macs: object) -> str:
    return f"{macs:,}" if isinstance(macs, int) else str(macs)


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def llama_70b_child(tokens: int) -> None:
    """Runs in a fresh process: build the 70B config on meta, time both counters, print JSON."""
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_70B))
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    params = sum(p.numel() for p in model.parameters())
    ours, report = _timed(lambda: hs.profile(model, inputs=ids, device="meta"), 2)
    rss_after_hookstats = _peak_rss_mib()
    reference, flops_macs = _timed(lambda: _flop_counter(model, (ids,)), 2)
    print(
        json.dumps(
            {
                "params": params,
                "hookstats_s": ours,
                "flopcounter_s": reference,
                "hookstats_macs": report.total("macs"),
                "flopcounter_macs": flops_macs,  # type: ignore[union-attr]
                "peak_rss_mib": rss_after_hookstats,
            }
        )
    )


def _run_70b(tokens: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--llama70b-child", str(tokens)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-70b", action="store_true")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--llama70b-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.llama70b_child is not None:
        llama_70b_child(args.llama70b_child)
        return
    console = Console(width=150)
    table = Table(title=f"profile speed (median of {args.repeat}, torch {torch.__version__})")
    for column in ("model", "tool", "time", "vs FlopCounterMode", "vs plain forward", "MACs"):
        table.add_column(column, justify="left" if column in ("model", "tool") else "right")
    for name, model, inputs in _models():
        for row in _bench_model(name, model, inputs, args.repeat):
            table.add_row(*row)
        table.add_section()
    console.print(table)
    if not args.skip_70b:
        result = _run_70b(args.tokens)
        ratio = result["hookstats_s"] / result["flopcounter_s"]
        console.print(
            f"Llama-style 70B ({result['params'] / 1e9:.1f} B params) on meta, {args.tokens} "
            f"tokens: hookstats {result['hookstats_s']:.2f} s, FlopCounterMode "
            f"{result['flopcounter_s']:.2f} s -> {ratio:.2f}x; "
            f"MACs {result['hookstats_macs']:,} vs {result['flopcounter_macs']:,}; "
            f"peak RSS of the process (imports, meta model, hookstats) "
            f"{result['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
