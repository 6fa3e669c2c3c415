"""How fast is a training-step profile (``hs.profile(..., train=True)``), next to FlopCounterMode
on the same step, and how do big models on meta fare?

1. Real CPU steps (forward, loss, backward, ``AdamW.step()``): the median wall time of the plain
   step, of the same step under ``torch.utils.flop_counter.FlopCounterMode``, and of
   ``hs.profile(model, inputs=..., train=True, loss_fn=..., optimizer="adamw")`` -- warm
   (repeated calls; the optimizer's meta measurement is cached per shapes) and cold (the first
   call in a fresh process) -- with the step MACs each reports.
2. Llama-style 7B and 70B configurations on meta with ``train=True`` and AdamW, bf16, each in a
   fresh child process: wall time, the child's peak RSS (VmHWM), and FlopCounterMode's time on
   the same meta step (forward, loss, backward).

Targets (issue 14): warm profile <= 1.5x FlopCounterMode's time on the same step; 7B under
10 s, 70B under 30 s, both under 2 GiB peak RSS.

Run:  python benchmarks/training_speed.py [--repeat 5] [--tokens 2048] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hookstats as hs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hf_models import LLAMA_7B, LLAMA_70B

from models import SmallCNN, TinyTransformer

LLAMA = {"7B": LLAMA_7B, "70B": LLAMA_70B}


def _median_s(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (all its threads): on shared
    cores the CPU time is the steadier of the two."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _peak_rss_mib() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _models() -> list[tuple[str, nn.Module, tuple[Any, ...], Callable[[Any], torch.Tensor]]]:
    mean: Callable[[Any], torch.Tensor] = lambda out: out.mean()  # noqa: E731
    models = [
        ("SmallCNN b32", SmallCNN(), (torch.randn(32, 1, 28, 28),), mean),
        (
            "TinyTransformer b8x64",
            TinyTransformer(vocab=1000, dim=128, heads=4, layers=4),
            (torch.randint(0, 1000, (8, 64)),),
            mean,
        ),
        (
            "LSTM(300,512,2) T100 b2",
            nn.LSTM(300, 512, 2),
            (torch.randn(100, 2, 300),),
            lambda out: out[0].mean(),
        ),
    ]
    try:
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=4, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        models.append(
            (
                "GPT-2 (4 layers) T128",
                GPT2LMHeadModel(config),
                (torch.randint(0, 50257, (1, 128)),),
                lambda out: out.logits.mean(),
            )
        )
    except ImportError:
        pass
    return models


def _plain_step(model: nn.Module, args: tuple, loss_fn: Callable, opt: Any) -> None:
    loss_fn(model(*args)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _flop_counter_step(model: nn.Module, args: tuple, loss_fn: Callable, opt: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        _plain_step(model, args, loss_fn, opt)
    return counter.get_total_flops() // 2


def _hookstats(model: nn.Module, args: tuple, loss_fn: Callable) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hs.profile(model, inputs=args, train=True, loss_fn=loss_fn, optimizer="adamw")


def _step_macs(report: Any) -> int:
    return report.training.forward_macs + report.total("backward_macs")


def cold_child(index: int) -> None:
    """A fresh process: the first profile of model ``index`` (nothing cached)."""
    _, model, args, loss_fn = _models()[index]
    model.train()
    start = time.process_time()
    _hookstats(model, args, loss_fn)
    print(json.dumps({"cold_cpu_s": time.process_time() - start}))


def _bench(index: int, repeat: int) -> list[str]:
    name, model, args, loss_fn = _models()[index]
    model.train()
    opt = torch.optim.AdamW(model.parameters())
    plain = _median_s(lambda: _plain_step(model, args, loss_fn, opt), repeat)
    reference = _median_s(lambda: _flop_counter_step(model, args, loss_fn, opt), repeat)
    reference_macs = _flop_counter_step(model, args, loss_fn, opt)
    ours = _median_s(lambda: _hookstats(model, args, loss_fn), repeat)
    macs = _step_macs(_hookstats(model, args, loss_fn))
    cold = _child(["--cold-child", str(index)])["cold_cpu_s"]
    return [
        name,
        f"{plain[0] * 1e3:.0f} / {plain[1] * 1e3:.0f} ms",
        f"{reference[0] * 1e3:.0f} / {reference[1] * 1e3:.0f} ms",
        f"{ours[0] * 1e3:.0f} / {ours[1] * 1e3:.0f} ms",
        f"{ours[0] / reference[0]:.2f}x / {ours[1] / reference[1]:.2f}x",
        f"{cold * 1e3:.0f} ms",
        f"{macs:,}",
        f"{reference_macs:,}",
    ]


def big_child(size: str, tokens: int) -> None:
    """A fresh process: the Llama-style config on meta, train=True with AdamW in bf16."""
    from transformers import LlamaConfig, LlamaForCausalLM

    warnings.simplefilter("ignore")
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA[size]))
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    loss_fn = lambda out: out.logits.mean()  # noqa: E731
    start, cpu = time.perf_counter(), time.process_time()
    report = hs.profile(
        model,
        inputs=ids,
        train=True,
        loss_fn=loss_fn,
        optimizer="adamw",
        device="meta",
        dtype=torch.bfloat16,
    )
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    rss = _peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    with FlopCounterMode(display=False):
        loss_fn(model(ids)).backward()
    reference, reference_cpu = time.perf_counter() - start, time.process_time() - cpu
    memory = report.memory
    print(
        json.dumps(
            {
                "params": sum(p.numel() for p in model.parameters()),
                "hookstats_s": ours,
                "hookstats_cpu_s": ours_cpu,
                "flopcounter_s": reference,
                "flopcounter_cpu_s": reference_cpu,
                "peak_rss_mib": rss,
                "forward_macs": report.training.forward_macs,
                "backward_macs": report.total("backward_macs"),
                "memory": memory.to_dict() if memory is not None else None,
                "fallback": report.fallback,
            }
        )
    )


def _child(arguments: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--cold-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--big-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child is not None:
        cold_child(args.cold_child)
        return
    if args.big_child is not None:
        big_child(args.big_child, args.tokens)
        return
    console = Console(width=160)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    table = Table(
        title=f"training step on CPU: wall / CPU time, median of {args.repeat}; cold: CPU time "
        "of the first call in a fresh process"
    )
    columns = ["model", "plain step", "FlopCounterMode", "hookstats", "ratio", "cold"]
    for column in [*columns, "hookstats MACs", "FlopCounterMode MACs"]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for index in range(len(_models())):
        table.add_row(*_bench(index, args.repeat))
    console.print(table)
    if args.skip_big:
        return
    big = Table(
        title=f"Llama-style configs on meta, train=True, AdamW, bf16, {args.tokens} tokens "
        "(wall / CPU time; a fresh process each)"
    )
    for column in ("config", "params", "hookstats", "FlopCounterMode", "peak RSS", "fwd+bwd MACs",
                   "peak memory", "peak during"):  # fmt: skip
        big.add_column(column, justify="left" if column == "config" else "right")
    for size in LLAMA:
        result = _child(["--big-child", size, "--tokens", str(args.tokens)])
        memory = result["memory"]
        big.add_row(
            size,
            f"{result['params'] / 1e9:.2f} B",
            f"{result['hookstats_s']:.1f} / {result['hookstats_cpu_s']:.1f} s",
            f"{result['flopcounter_s']:.1f} / {result['flopcounter_cpu_s']:.1f} s",
            f"{result['peak_rss_mib']:.0f} MiB",
            f"{(result['forward_macs'] + result['backward_macs']) / 1e12:.1f} T",
            _gib(memory["peak"]),
            memory["peak_phase"],
        )
    console.print(big)


if __name__ == "__main__":
    main()
