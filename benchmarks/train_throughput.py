"""Training throughput: bigmodel's engine against a bare hand-written PyTorch loop on the same batches.

    .venv/bin/python benchmarks/train_throughput.py                       # CPU: small model, IMDb lengths
    python benchmarks/train_throughput.py --size base --compile          # GPU: BERT-base size in bf16, MFU

Both sides train the same model (same initial weights) on the same batches, in alternating rounds;
each round runs 2 x --steps optimizer steps and times the second half (the first half is warm-up:
allocator, autotuning, compilation). Printed: tokens/s of each side per round, the medians, and
engine / bare (target >= 0.95). On CUDA also model FLOPs utilisation (6 x non-embedding parameters +
attention, per real token, against the GPU's dense bf16 peak; target >= 40% on an H100) and, with
--compile, the engine with torch.compile.

The batches come from IMDb reviews (../shared/datasets/imdb, the train folder), tokenized with the
BPE tokenizer bigmodel trains, at --max-length tokens (head truncation): the padding efficiency of
the length-bucketed plan (real tokens / padded tokens) is printed beside random batching (target
>= 0.9 at 512). Without the dataset, --synthetic draws lengths from a log-normal fitted to IMDb's.

Only torch, tokenizers, numpy and pydantic are needed (no mlflow, prefect, dvc or pandera): the
training path imports none of them, so this runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bigmodel_core.config import TokenizerParams, TrainParams  # noqa: E402
from bigmodel_core.models.transformer import TransformerClassifier  # noqa: E402
from bigmodel_core.text.encoders import SubwordEncoder  # noqa: E402
from bigmodel_core.training.batching import Ragged, padding_efficiency, plan_batches  # noqa: E402
from bigmodel_core.training.device import autocast, configure_backends  # noqa: E402
from bigmodel_core.training.loop import Callback, TrainData, fit, lr_lambda, seed_everything  # noqa: E402

SIZES = {  # d_model, n_heads, n_layers, d_ff
    "tiny": (64, 4, 2, 128),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),  # BERT-base
}
# dense bf16 tensor-core peaks (TFLOP/s), by a substring of torch.cuda.get_device_name()
PEAKS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def imdb_texts(datasets: Path, limit: int) -> list[str]:
    """Review texts of IMDb's train folder, read straight from the tarball."""
    path = datasets / "imdb" / "aclImdb_v1_labeled.tar.gz"
    texts = []
    with tarfile.open(path) as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 4 and parts[-3] == "train" and parts[-2] in ("pos", "neg"):
                texts.append(tar.extractfile(m).read().decode("utf-8", "replace").replace("<br />", " "))
                if len(texts) >= limit:
                    break
    return texts


def load_data(args) -> tuple[Ragged, int, str]:
    if args.synthetic or not (args.datasets / "imdb").exists():
        if not args.synthetic:
            print(f"note: {args.datasets / 'imdb'} not found; using synthetic IMDb-like lengths", flush=True)
        rng = np.random.default_rng(0)
        lengths = np.clip(rng.lognormal(np.log(230), 0.75, size=args.rows).astype(int), 8, args.max_length)
        rows = [rng.integers(5, args.vocab_size, size=n).tolist() for n in lengths]
        return Ragged.from_lists(rows), args.vocab_size, "synthetic (log-normal, IMDb-like)"
    t0 = time.perf_counter()
    texts = imdb_texts(args.datasets, args.rows)
    enc = SubwordEncoder.train(texts, TokenizerParams(vocab_size=args.vocab_size, max_length=args.max_length))
    data = enc.encode(texts)
    print(f"IMDb: {len(texts)} reviews, BPE vocabulary {enc.vocab_size}, encoded in {time.perf_counter() - t0:.1f}s",
          flush=True)
    return data, enc.vocab_size, "IMDb train reviews"


def make_model(args, vocab: int) -> torch.nn.Module:
    """bigmodel's own encoder (model.kind transformer) or, with --arch hf, Hugging Face's BERT of the same
    size, randomly initialised, wrapped as model.kind pretrained wraps a backbone (the cost of a fine-tune)."""
    d, h, n, ff = SIZES[args.size]
    seed_everything(0)
    if args.arch == "hf":
        from transformers import BertConfig, BertForSequenceClassification

        from bigmodel_core.models.pretrained import PretrainedClassifier

        cfg = BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=n, num_attention_heads=h,
                         intermediate_size=ff, max_position_embeddings=max(512, args.max_length), num_labels=2,
                         attn_implementation="sdpa")
        return PretrainedClassifier(BertForSequenceClassification(cfg))
    return TransformerClassifier(vocab, 2, d_model=d, n_heads=h, n_layers=n, d_ff=ff, dropout=0.1,
                                 max_length=args.max_length)


def flops_per_token(model: torch.nn.Module, args, seq_len: int) -> float:
    """Training FLOPs per token: 6 x weights outside the embedding tables + the attention score products."""
    if isinstance(model, TransformerClassifier):
        return model.flops_per_token(seq_len)
    d, _, n, _ = SIZES[args.size]
    weights = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    return 6.0 * weights + 12.0 * n * d * seq_len


class Clock(Callback):
    """Timestamps at the engine's log points (every --steps steps), after the device has finished."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float]] = []

    def on_step(self, step: int, metrics: dict) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append((step, time.perf_counter()))


def engine_round(args, data: TrainData, vocab: int, compile_: bool) -> dict:
    model = make_model(args, vocab)
    p = TrainParams(epochs=1, batch_size=args.batch_size, token_budget=args.token_budget, lr=1e-4, device=args.device, precision=args.precision,
                    compile=compile_, max_steps=2 * args.steps, log_every=args.steps, patience=0,
                    checkpoint_every=0, num_threads=args.threads, warmup_fraction=0.1)
    clock = Clock()
    _, r = fit(model, data, p, callbacks=[clock], progress=False)
    (s0, t0), (s1, t1) = clock.marks[0], clock.marks[1]
    tokens = window_tokens(data, args, s0, s1)
    return {"tokens_per_second": tokens / (t1 - t0), "seconds": t1 - t0, "loss": r.steps[-1]["loss"],
            "flops": window_flops(model, data, args, s0, s1)}


def plan(data: TrainData, args) -> list[np.ndarray]:
    """The engine's plan for epoch 1 (same seed, same cut), so both sides see identical batches."""
    return plan_batches(data.train.lengths, args.batch_size, args.token_budget, 42, 1)[:2 * args.steps]


def window_tokens(data: TrainData, args, s0: int, s1: int) -> int:
    return int(sum(data.train.lengths[b].sum() for b in plan(data, args)[s0:s1]))


def window_flops(model: torch.nn.Module, data: TrainData, args, s0: int, s1: int) -> float:
    total = 0.0
    for b in plan(data, args)[s0:s1]:
        lengths = data.train.lengths[b]
        total += float(lengths.sum()) * flops_per_token(model, args, int(lengths.max()))
    return total


def bare_round(args, data: TrainData, vocab: int) -> dict:
    """The loop anyone would write: AdamW, warm-up/decay, autocast, clipping. Nothing else."""
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    configure_backends(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = make_model(args, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
    steps = plan(data, args)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(len(steps), int(0.1 * len(steps))))
    torch.manual_seed(42)
    model.train()
    marks = []
    for i, rows in enumerate(steps):
        batch = data.collate(data.train, rows)
        ids = batch["ids"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True) if batch["mask"] is not None else None
        y = torch.as_tensor(data.train_y[rows], device=device)
        with autocast(device, args.precision):
            logits = model(ids, mask)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if i + 1 in (args.steps, 2 * args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
    tokens = window_tokens(data, args, args.steps, 2 * args.steps)
    return {"tokens_per_second": tokens / (marks[1] - marks[0]), "seconds": marks[1] - marks[0],
            "loss": float(loss.detach())}


def profile_engine(args, data: TrainData, vocab: int) -> dict:
    """GPU kernel time of the engine's timed steps, grouped by kind of kernel (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine_round(args, data, vocab, False)
    groups = {"matmul": ("gemm", "cutlass", "sm90_xmma", "cublas", "nvjet"),
              "attention": ("flash", "fmha", "attention", "cudnn"),
              "optimizer": ("adam", "multi_tensor", "foreach")}
    shares = {k: 0.0 for k in [*groups, "elementwise, norms, other"]}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0)
        if not t or e.key.startswith(("ProfilerStep", "aten::", "cuda", "Memcpy", "Memset")):
            continue
        name = e.key.lower()
        kind = next((k for k, subs in groups.items() if any(x in name for x in subs)), "elementwise, norms, other")
        shares[kind] += t
    total = sum(shares.values()) or 1.0
    print("engine GPU kernel time: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in shares.items()))
    return {k: v / total for k, v in shares.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=list(SIZES), default=None, help="model size (default: base on CUDA, tiny on CPU)")
    ap.add_argument("--arch", choices=["bigmodel", "hf"], default="bigmodel",
                    help="bigmodel's encoder, or Hugging Face's BERT as model.kind pretrained trains it (needs transformers)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=None, help="rows per step (default: 32 on CUDA, 16 on CPU)")
    ap.add_argument("--token-budget", type=int, default=0,
                    help="cut batches by tokens (rows x longest row <= this) instead of --batch-size rows")
    ap.add_argument("--profile", action="store_true",
                    help="CUDA: also print where the engine's GPU time goes (matmuls, attention, the rest)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 30 on CUDA, 10 on CPU)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    ap.add_argument("--rows", type=int, default=25000, help="IMDb reviews to read")
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time the engine with torch.compile (CUDA)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak for MFU")
    ap.add_argument("--synthetic", action="store_true", help="IMDb-like lengths without the dataset")
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    args.size = args.size or ("base" if cuda else "tiny")
    args.batch_size = args.batch_size or (32 if cuda else 16)
    args.steps = args.steps or (30 if cuda else 10)
    device_name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"

    data_ids, vocab, source = load_data(args)
    lengths = data_ids.lengths
    y = np.random.default_rng(1).integers(0, 2, size=len(data_ids))
    pad = 0
    from bigmodel_core.training.batching import collate_padded

    data = TrainData(data_ids, y, data_ids.take(np.arange(min(64, len(data_ids)))), y[:64], 2,
                     lambda d, r: collate_padded(d, r, pad))

    bucketed = plan_batches(lengths, args.batch_size, 0, 42, 1)
    random_batches = np.array_split(np.random.default_rng(0).permutation(len(lengths)), max(1, len(lengths) // args.batch_size))
    budget = plan_batches(lengths, 1, args.batch_size * args.max_length, 42, 1)
    eff = {"bucketed": padding_efficiency(lengths, bucketed, 8), "token_budget": padding_efficiency(lengths, budget, 8),
           "random": padding_efficiency(lengths, random_batches, 8)}
    print(f"\ndata: {source}, {len(lengths)} rows at max_length {args.max_length}: median {int(np.median(lengths))} "
          f"tokens, {100 * np.mean(lengths >= args.max_length):.0f}% truncated")
    print(f"padding efficiency (real / padded tokens): length-bucketed {eff['bucketed']:.3f}, "
          f"token budget {args.batch_size * args.max_length} {eff['token_budget']:.3f}, random batches {eff['random']:.3f} "
          f"(target >= 0.9: {'PASS' if eff['bucketed'] >= 0.9 else 'FAIL'})\n")

    d, h, n, ff = SIZES[args.size]
    batching = f"token budget {args.token_budget}" if args.token_budget else f"batch {args.batch_size}"
    print(f"model: {args.arch} {args.size} (d_model {d}, {n} layers, {h} heads), {batching}, "
          f"{args.steps} timed steps x {args.rounds} rounds, device {device_name}, "
          f"precision {'bf16' if (cuda and args.precision == 'auto') or args.precision == 'bf16' else 'fp32'}")
    results: dict[str, list[dict]] = {"engine": [], "bare": []}
    if args.compile and cuda:
        results["engine+compile"] = []
    # one untimed round per side first: CUDA context, kernel autotuning and compilation caches warm up
    # there, so the first timed round of each side is not penalised for coming first
    for side in results:
        res = bare_round(args, data, vocab) if side == "bare" else engine_round(args, data, vocab, side != "engine")
        print(f"  warm-up {side:<15} {res['tokens_per_second']:>12,.0f} tokens/s  (not counted)", flush=True)
    for r in range(args.rounds):
        for side in results:
            res = bare_round(args, data, vocab) if side == "bare" else engine_round(args, data, vocab, side != "engine")
            results[side].append(res)
            print(f"  round {r + 1} {side:<15} {res['tokens_per_second']:>12,.0f} tokens/s  (loss {res['loss']:.4f})",
                  flush=True)
    med = {side: statistics.median(x["tokens_per_second"] for x in rs) for side, rs in results.items()}
    ratio = med["engine"] / med["bare"]
    print(f"\nmedian tokens/s: " + ", ".join(f"{s} {v:,.0f}" for s, v in med.items()))
    print(f"engine / bare loop: {ratio:.3f} (target >= 0.95: {'PASS' if ratio >= 0.95 else 'FAIL'})")
    out = {"device": device_name, "arch": args.arch, "size": args.size, "batch_size": args.batch_size,
           "token_budget": args.token_budget, "max_length": args.max_length,
           "data": source, "padding_efficiency": eff, "median_tokens_per_second": med, "engine_over_bare": ratio,
           "rounds": results}
    if cuda:
        peak = args.peak_tflops or next((v for k, v in PEAKS.items() if k in device_name), None)
        for side, rs in results.items():
            if side == "bare":
                continue
            achieved = statistics.median(x["flops"] / x["seconds"] for x in rs) / 1e12
            mfu = achieved / peak if peak else None
            out.setdefault("mfu", {})[side] = mfu
            print(f"{side}: {achieved:.1f} TFLOP/s of model FLOPs" + (f" = MFU {100 * mfu:.1f}% of {peak:.0f} "
                  f"(target >= 40%: {'PASS' if mfu >= 0.4 else 'FAIL'})" if mfu else " (unknown GPU peak: --peak-tflops)"))
        if "engine+compile" in med:
            print(f"torch.compile: {med['engine+compile'] / med['engine']:.3f}x the eager engine")
        if args.profile:
            out["gpu_time_shares"] = profile_engine(args, data, vocab)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
