"""Fine-tune a tiny GPT-2 with the Hugging Face ``Trainer``, log weight and activation metrics
at every save through ``HookstatsCallback``, then write TensorBoard files.

The model is a 2-layer GPT-2 built from a config (random init, nothing downloaded) learning a
repeating token pattern, on CPU, for a few steps. What happens:

1. ``HookstatsCallback(every="save", probe=...)`` logs ``l2`` and ``spectral_norm`` of every
   attention and MLP block, and ``act_rms`` and ``act_kurtosis`` of what flows out of them on
   a probe batch of 8 sequences, at each checkpoint save into ``metrics.sqlite`` (run "ft"),
   keyed as ``hs.sweep`` keys ``checkpoint-*/model.safetensors`` (their content identity);
2. a sweep over the saved checkpoints into the same run, with the same probe, skips every one
   of them (already logged);
3. ``store.to_tensorboard`` writes the run as scalars ``hookstats/<metric>/<hook_point>``, plus
   the singular values of each block's weights at the last step as histograms.

Run:  python examples/trainer_callback.py  [--steps 12] [--out outputs/trainer_callback]
      (needs: pip install hookstats[transformers,tensorboard])
Then: tensorboard --logdir outputs/trainer_callback/tb
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import hookstats as hs
from hookstats.integrations.tensorboard import singular_value_frame
from hookstats.integrations.transformers import HookstatsCallback

POINTS = ["transformer.h.*.attn", "transformer.h.*.mlp"]
METRICS = ["l2", "spectral_norm", "act_rms", "act_kurtosis"]
VOCAB, LENGTH = 64, 32


def build_model() -> GPT2LMHeadModel:
    """A 2-layer GPT-2 with 32-wide embeddings (about 60 k parameters), random init."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    return GPT2LMHeadModel(config)


def dataset(rows: int = 256) -> list[dict[str, torch.Tensor]]:
    """Sequences ``s, s+1, s+2, ...`` (mod the vocabulary): easy to learn in a few steps."""
    starts = torch.randint(0, VOCAB, (rows, 1), generator=torch.Generator().manual_seed(0))
    ids = (starts + torch.arange(LENGTH)) % VOCAB
    return [{"input_ids": row, "labels": row} for row in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("outputs/trainer_callback"))
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    store = hs.MetricStore(options.out / "metrics.sqlite")

    model = build_model()
    args = TrainingArguments(
        output_dir=str(options.out / "checkpoints"),
        max_steps=options.steps,
        save_steps=max(options.steps // 3, 1),
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        logging_steps=options.steps,
    )
    probe = (torch.stack([row["input_ids"] for row in dataset(8)]), None)  # 8 x 32 tokens
    callback = HookstatsCallback(
        store, "ft", POINTS, METRICS, every="save", if_exists="replace", probe=probe
    )
    Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[callback]).train()
    print(store.checkpoints("ft")[["step", "rows", "seconds"]].to_string(index=False))
    last = store.to_frame(run="ft", metric=["act_rms", "act_kurtosis"], hook_point="*.mlp")
    print(last[last["step"] == last["step"].max()].to_string(index=False))

    files = str(options.out / "checkpoints" / "checkpoint-*" / "model.safetensors")
    print(hs.sweep(files, build_model, store, "ft", POINTS, METRICS, probe=probe, progress=False))

    spectra = singular_value_frame(model, POINTS, step=options.steps)
    for folder in store.to_tensorboard(options.out / "tb", run="ft", spectra=spectra):
        print(f"TensorBoard files in {folder}")
    store.close()


if __name__ == "__main__":
    main()
