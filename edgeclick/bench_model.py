"""Model benchmark: parameters, GFLOPs and torch CPU latency of the encoder (per image) and the decoder
(per click) for w18s / w18 × early / late at 320×480 and 640×960, plus the conv-adapter early model.

    python -m edgeclick.bench_model [--sizes 320x480,640x960] [--repeats 3] [--out reports/bench_model]

A benchmark, not a test: it prints a table and writes Markdown + JSON. FLOPs are counted by
torch.utils.flop_counter (2 per multiply-add; convs/matmuls only — the click rasteriser's elementwise ops
are not counted). Latencies are medians of `repeats` runs after one warm-up, eager PyTorch, float32.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgeclick.args import parse_size
from edgeclick.clicks import click_rows
from edgeclick.io import write_json_atomic, write_text_atomic
from edgeclick.model import create_model
from edgeclick.model.split import split_model


@dataclass
class Row:
    model: str
    fusion: str
    adapter: bool
    size: str
    encoder_params_m: float
    decoder_params_m: float
    encoder_gflops: float
    decoder_gflops: float
    decoder_share: float  # decoder FLOPs / encoder FLOPs
    encoder_ms: float
    decoder_ms: float


def _params(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _flops(fn, *args: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def _median_ms(fn, *args: torch.Tensor, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _params_used(model: torch.nn.Module, fn, *args: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    """Millions of parameters held by the modules that run during `fn(*args)` (which graph uses what)."""
    ran: set[int] = set()
    hooks = [m.register_forward_hook(lambda mod, inp, out: ran.add(id(mod)))
             for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    try:
        fn(*args)
    finally:
        for h in hooks:
            h.remove()
    return sum(p.numel() for m in model.modules() if id(m) in ran for p in m.parameters(recurse=False)) / 1e6


@torch.inference_mode()
def bench(name: str, fusion: str, adapter: bool, size: tuple[int, int], repeats: int) -> Row:
    torch.manual_seed(0)
    model = create_model(name, fusion=fusion, adapter="conv" if adapter else None).eval()
    enc, dec = split_model(model)
    h, w = size
    image = torch.randint(0, 255, (1, h, w, 3), dtype=torch.uint8)
    clicks = torch.from_numpy(click_rows([(w / 2, h / 2, True), (w / 3, h / 3, False), (w / 4, h / 2, True)]))
    prev = torch.zeros(1, 1, h, w)
    feats = enc(image)
    enc_params = _params_used(model, enc, image)
    dec_params = _params_used(model, dec, *feats, clicks, prev)
    enc_gflops = _flops(enc, image)
    dec_gflops = _flops(dec, *feats, clicks, prev)
    return Row(
        model=name, fusion=fusion, adapter=adapter, size=f"{h}x{w}",
        encoder_params_m=round(enc_params, 3), decoder_params_m=round(dec_params, 3),
        encoder_gflops=round(enc_gflops, 3), decoder_gflops=round(dec_gflops, 3),
        decoder_share=round(dec_gflops / enc_gflops, 4) if enc_gflops else float("inf"),
        encoder_ms=round(_median_ms(enc, image, repeats=repeats), 1),
        decoder_ms=round(_median_ms(dec, *feats, clicks, prev, repeats=repeats), 1),
    )


def to_markdown(rows: list[Row], header: str) -> str:
    lines = [header, "",
             "| model | fusion | adapter | input | enc params (M) | dec params (M) | enc GFLOPs | dec GFLOPs | dec/enc FLOPs | enc ms | dec ms/click |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.fusion} | {'conv' if r.adapter else '-'} | {r.size} | {r.encoder_params_m:.3f} | {r.decoder_params_m:.3f} "
                     f"| {r.encoder_gflops:.2f} | {r.decoder_gflops:.2f} | {100 * r.decoder_share:.1f}% | {r.encoder_ms:.0f} | {r.decoder_ms:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="hrnet18s,hrnet18")
    parser.add_argument("--sizes", default="320x480,640x960")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("reports/bench_model"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    configs = [(m, f, False, s) for m in args.models.split(",") for s in sizes for f in ("early", "late")]
    # The paper's high-resolution setting: conv adapter, base at half of the largest size.
    configs += [(args.models.split(",")[0], f, True, max(sizes)) for f in ("early", "late")]
    rows = []
    for name, fusion, adapter, size in configs:
        row = bench(name, fusion, adapter, size, args.repeats)
        rows.append(row)
        print(to_markdown([row], "").splitlines()[-1], flush=True)
    header = (f"# edgeclick model benchmark\n\ntorch {torch.__version__}, {args.threads} threads, eager float32 CPU; "
              f"median of {args.repeats} runs after warm-up. GFLOPs = 2 × multiply-adds of convs/matmuls.")
    md = to_markdown(rows, header)
    write_text_atomic(args.out.with_suffix(".md"), md)
    write_json_atomic(args.out.with_suffix(".json"), [asdict(r) for r in rows])
    print(md)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
