"""Overhead of ``track()`` on CPU, in ratios to the plain model measured in the same run.

Suites (``--suite``, default all):

* ``steady`` -- time per forward with a tracker open (its counted first forward of the
  signature untimed): the seed's small CNN and a small transformer at batch 1 and 32, and a
  1024-wide MLP at batch 32. Targets with timing off:
  under 15% at batch 1, under 5% at batch 32, under 3% for the 1024-wide MLP.
* ``generate`` -- ``model.generate()`` of a Llama-shaped model (hidden 512, 4 layers, 8 heads,
  sdpa, vocab 32000) for 32 new tokens after a 16-token prompt, greedy. ``cold``: a new
  tracker around each generate (the prompt and the first decoding steps are counted, the rest
  predicted); ``warm``: the tracker open across generates (every step's signature seen).
  Targets: timing off <= 1.05x, timing on <= 1.15x. Every tracked generate is checked to be
  exact (per hook point, against ``hs.profile`` of each forward) once before timing.
* ``moe`` -- a mixture of experts: transformers' Mixtral (grouped experts: shapes decide the
  work) and a token-choice MoE whose expert calls depend on the routing (every forward read
  values, so every forward is counted): exactness first, the overhead is reported.
* ``memory`` -- RSS growth of a tracker over 10,001 distinct sequence lengths (the per-
  signature state is bounded).

Configurations run on one model object (copies of a model differ by a few percent in speed,
memory placement), interleaved round by round, and the *fastest* round of each is reported
(like ``timeit``): on a shared machine other processes only ever add time. Wall time is the
figure; process CPU time (``--clock cpu``) is less disturbed by other processes on a shared
machine. One thread (``torch.set_num_threads(1)``) unless ``--threads``.

Run:  python benchmarks/track_overhead.py [--suite generate] [--rounds 7] [--clock cpu]
"""

from __future__ import annotations

import argparse
import collections
import gc
import resource
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

import hookstats as hs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import SmallCNN, TinyTransformer, TokenChoiceMoE

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CONFIGS = ("plain", "timing off", "timing on")


def fastest_rounds(
    runs: dict[str, Callable[[Callable[[], float]], float]],
    rounds: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """Seconds of the fastest round of each run, rounds interleaved. A run gets the clock and
    returns the seconds of what it timed (so it can set up a tracker outside the timing)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            gc.collect()
            times[name].append(run(clock))
    return {name: min(values) for name, values in times.items()}


def timed(work: Callable[[], Any]) -> Callable[[Callable[[], float]], float]:
    """A run that times all of ``work``."""

    def run(clock: Callable[[], float]) -> float:
        start = clock()
        work()
        return clock() - start

    return run


# --- steady state ---------------------------------------------------------------------------


class WideMLP(nn.Module):
    def __init__(self, width: int = 1024, layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(m for _ in range(layers) for m in (nn.Linear(width, width), nn.ReLU()))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


STEADY_CASES: list[tuple[str, Callable[[], nn.Module], Callable[[int], torch.Tensor], int, float]]
STEADY_CASES = [
    ("small CNN", SmallCNN, lambda b: torch.randn(b, 1, 28, 28), 1, 0.15),
    ("small CNN", SmallCNN, lambda b: torch.randn(b, 1, 28, 28), 32, 0.05),
    (
        "small transformer",
        lambda: TinyTransformer(vocab=1000, dim=128, heads=4, layers=2),
        lambda b: torch.randint(0, 1000, (b, 64)),
        1,
        0.15,
    ),
    (
        "small transformer",
        lambda: TinyTransformer(vocab=1000, dim=128, heads=4, layers=2),
        lambda b: torch.randint(0, 1000, (b, 64)),
        32,
        0.05,
    ),
    ("MLP 1024 wide", WideMLP, lambda b: torch.randn(b, 1024), 32, 0.03),
]


def steady(rounds: int, forwards: int, clock: Callable[[], float]) -> list[dict[str, Any]]:
    """Per round: the plain loop, then each tracker opened, warmed up (its counted forwards
    untimed) and the same loop timed -- all on one model object."""
    results = []
    for name, make, make_input, batch, target in STEADY_CASES:
        torch.manual_seed(0)
        model = make().eval()
        x = make_input(batch)
        n = max(10, forwards // batch)

        def loop(n: int = n, x: torch.Tensor = x, model: nn.Module = model) -> None:
            for _ in range(n):
                model(x)

        def tracked(
            timing: bool,
            loop: Callable[[], None] = loop,
            model: nn.Module = model,
            x: torch.Tensor = x,
        ) -> Callable[[Callable[[], float]], float]:
            def run(clock: Callable[[], float]) -> float:
                with hs.track(model, timing=timing):
                    for _ in range(5):  # the counted forward of the signature
                        model(x)
                    start = clock()
                    loop()
                    return clock() - start

            return run

        with torch.no_grad():
            loop()
            runs = {"plain": timed(loop), "timing off": tracked(False), "timing on": tracked(True)}
            best = fastest_rounds(runs, rounds, clock)
        per_forward = {config: seconds / n for config, seconds in best.items()}
        results.append({"case": f"{name}, batch {batch}", "target": target, **per_forward})
    return results


# --- generate -------------------------------------------------------------------------------


def llama(hidden: int = 512, layers: int = 4) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=1376,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=32000,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval()


def check_exact(model: nn.Module, generate: Callable[[], Any], timing: bool) -> dict[str, Any]:
    """One tracked generate compared, per hook point, with hs.profile of each forward."""
    reference: collections.Counter[str] = collections.Counter()
    busy = [False]

    def profile_forward(module: nn.Module, args: Any, kwargs: Any) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            for row in hs.profile(model, inputs=args, kwargs=kwargs).to_frame().itertuples():
                reference[str(row.hook_point)] += int(row.macs)
        finally:
            busy[0] = False

    handle = model.register_forward_pre_hook(profile_forward, with_kwargs=True)
    try:
        generate()
    finally:
        handle.remove()
    with hs.track(model, timing=timing) as tracker:
        generate()
    frame = tracker.to_frame().set_index("hook_point")
    wrong = [name for name, macs in reference.items() if int(frame.loc[name, "macs"]) != macs]
    report = tracker.report
    return {
        "exact": not wrong,
        "forwards": report.forwards,
        "counted": report.counted_forwards,
        "predicted": report.predicted_forwards,
        "gmacs": report.total("macs") / 1e9,
    }


def generate_suite(rounds: int, clock: Callable[[], float], new_tokens: int) -> dict[str, Any]:
    """All on one model object: ``cold`` times a tracker opened around one generate, ``warm``
    the second generate inside one tracker (every signature of it seen in the first)."""
    model = llama()
    prompt = torch.randint(0, 32000, (1, 16))

    def generate() -> Any:
        return model.generate(
            prompt,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )

    def cold(timing: bool) -> Callable[[Callable[[], float]], float]:
        def run(clock: Callable[[], float]) -> float:
            start = clock()
            with hs.track(model, timing=timing):
                generate()
            return clock() - start

        return run

    def warm(timing: bool) -> Callable[[Callable[[], float]], float]:
        def run(clock: Callable[[], float]) -> float:
            with hs.track(model, timing=timing):
                generate()
                start = clock()
                generate()
                return clock() - start

        return run

    with torch.inference_mode():
        checks = {t: check_exact(model, generate, t) for t in (False, True)}
        generate()
        runs = {
            "plain": timed(generate),
            "off, cold": cold(False),
            "on, cold": cold(True),
            "off, warm": warm(False),
            "on, warm": warm(True),
        }
        best = fastest_rounds(runs, rounds, clock)
    return {"best": best, "checks": checks}


# --- mixture of experts ---------------------------------------------------------------------


def moe_suite(rounds: int, clock: Callable[[], float]) -> list[dict[str, Any]]:
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    mixtral = MixtralForCausalLM(
        MixtralConfig(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=4,
            vocab_size=1000,
            num_local_experts=8,
            num_experts_per_tok=2,
        )
    ).eval()
    ids = torch.randint(0, 1000, (4, 64))
    inputs = [torch.randn(256, 256) for _ in range(8)]
    cases: list[tuple[str, nn.Module, Callable[[nn.Module], Any]]] = [
        ("Mixtral, grouped experts, 4 x 64 tokens", mixtral, lambda m: m(ids)),
        (
            "token-choice MoE, 8 x 256 tokens",
            TokenChoiceMoE(width=256, experts=8).eval(),
            lambda m: [m(x) for x in inputs],
        ),
    ]
    results = []
    for name, model, call in cases:

        def tracked(
            timing: bool, model: nn.Module = model, call: Any = call
        ) -> Callable[[Callable[[], float]], float]:
            def run(clock: Callable[[], float]) -> float:
                with hs.track(model, timing=timing):
                    call(model)  # a first call: new signatures counted
                    start = clock()
                    call(model)
                    return clock() - start

            return run

        with torch.inference_mode():
            call(model)
            runs = {
                "plain": timed(lambda model=model, call=call: call(model)),
                "timing off": tracked(False),
                "timing on": tracked(True),
            }
            best = fastest_rounds(runs, rounds, clock)
            with hs.track(model, timing=False) as probe:
                call(model)
                call(model)
        report = probe.report
        results.append(
            {
                "case": name,
                "target": None,
                **best,
                "counted": f"{report.counted_forwards}/{report.forwards}",
                "reads": ", ".join(sorted(report.value_reads)) or "-",
            }
        )
    return results


# --- memory ---------------------------------------------------------------------------------


def rss_mib() -> float:
    """The process's resident set size now, in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_suite(lengths: int) -> dict[str, Any]:
    """RSS after 1, half and all of ``lengths`` forwards with distinct sequence lengths: plain
    first (what the allocator keeps), then tracked (what the tracker adds)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(1000, 64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)
    ).eval()
    checkpoints = (1, lengths // 2 + 1, lengths)
    marks: dict[str, dict[int, float]] = {"plain": {}, "tracked": {}}

    def run(into: dict[int, float]) -> None:
        for length in range(1, lengths + 1):
            model(torch.zeros(1, length, dtype=torch.long))
            if length in checkpoints:
                gc.collect()
                into[length] = rss_mib()

    with torch.no_grad():
        run(marks["plain"])
        with hs.track(model, timing=False) as tracker:
            run(marks["tracked"])
            cache = tracker._accounts.cache
            entries, bound = len(cache.entries), cache.max_entries
    return {"marks": marks, "entries": entries, "bound": bound, "forwards": lengths}


# --- output ---------------------------------------------------------------------------------


def ratio_table(title: str, rows: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, header_style="bold")
    for column in ("case", "plain ms", "off", "target", "on", *extra):  # ms per forward/call
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        plain = row["plain"]
        off, on = row["timing off"] / plain, row["timing on"] / plain
        target = row.get("target")
        verdict = (
            ""
            if target is None
            else f"<={1 + target:.2f}x {'ok' if off <= 1 + target else 'MISSED'}"
        )
        table.add_row(
            row["case"],
            f"{plain * 1e3:.3f}",
            f"{off:.3f}x",
            verdict,
            f"{on:.3f}x",
            *(str(row[e]) for e in extra),
        )
    return table


def generate_table(result: dict[str, Any], clock: str) -> Table:
    best = result["best"]
    plain = best["plain"]
    table = Table(
        title=f"generate(): Llama-shaped, hidden 512, 4 layers, 32 new tokens ({clock} time)",
        header_style="bold",
    )
    for column in ("run", "ms", "ratio", "target"):
        table.add_column(column, justify="left" if column == "run" else "right")
    targets = {"off": 1.05, "on": 1.15}
    for name, seconds in best.items():
        ratio = seconds / plain
        target = targets.get(name.split(",")[0])
        verdict = (
            "" if target is None else f"<={target:.2f}x {'ok' if ratio <= target else 'MISSED'}"
        )
        table.add_row(name, f"{seconds * 1e3:.1f}", f"{ratio:.3f}x", verdict)
    for timing, check in result["checks"].items():
        table.caption = (table.caption or "") + (
            f"timing={'on' if timing else 'off'}: exact={check['exact']}, "
            f"{check['counted']} of {check['forwards']} forwards counted, "
            f"{check['predicted']} predicted. "
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", choices=("steady", "generate", "moe", "memory", "all"), default="all"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--forwards", type=int, default=100, help="forwards per steady round at batch 1"
    )
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--lengths", type=int, default=10_001)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    console = Console()
    clock = CLOCKS[args.clock]
    suites = ("steady", "generate", "moe", "memory") if args.suite == "all" else (args.suite,)
    header = f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.clock} time"
    console.print(f"[bold]track() overhead[/] -- {header}, fastest of {args.rounds} rounds")
    if "steady" in suites:
        rows = steady(args.rounds, args.forwards, clock)
        console.print(ratio_table("steady state, per forward (ratio to plain)", rows))
    if "generate" in suites:
        console.print(
            generate_table(generate_suite(args.rounds, clock, args.new_tokens), args.clock)
        )
    if "moe" in suites:
        rows = moe_suite(args.rounds, clock)
        console.print(ratio_table("mixture of experts (exact first)", rows, ("counted", "reads")))
    if "memory" in suites:
        memory = memory_suite(args.lengths)
        for name, marks in memory["marks"].items():
            first = marks[min(marks)]
            text = ", ".join(f"+{mib - first:.1f} MiB after {n:,}" for n, mib in marks.items())
            console.print(f"memory, {name}: RSS {first:.1f} MiB after 1 forward, {text}")
        console.print(
            f"memory: {memory['forwards']:,} distinct sequence lengths; "
            f"{memory['entries']} cache entries kept (bound {memory['bound']})"
        )


if __name__ == "__main__":
    main()
