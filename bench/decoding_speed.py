"""Decoding speed of the Gated PixelCNN: naive (one full pass per pixel) vs cached incremental, same run.

Produces every logit of a batch of 28x28 binary images, fed the true pixels in raster order as the decoder
sees them: with `--model MODEL --data DATA`, the trained decoder on real images and codes; otherwise the default
decoder size of acncodec.acn.ModelConfig with random weights (timing does not depend on them). The naive path is timed on an
evenly spaced subset of pixels and extrapolated to all H*W (a full pass costs the same wherever the pixel is).

Usage: python bench/decoding_speed.py [--model MODEL --data DATA] [--batch 16] [--threads 1] [--size 28] [--naive-pixels 49]
                                      [--repeats 3] [--json OUT]
"""

import sys
from pathlib import Path
import argparse
import json
import platform
import time

import torch

from acncodec.acn import ModelConfig
from acncodec.coding.raster import raster
from acncodec.incremental import IncrementalDecoder, naive_logits
from acncodec.pixelcnn import GatedPixelCNN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402


def incremental_all(net, x, z):
    b, ch, height, width = x.shape
    out = torch.empty(b, ch, net.head.outputs, height, width)

    def record(logits, i, j, c):
        out[:, c, :, i, j] = logits
        return x[:, c, i, j].numpy()
    raster(IncrementalDecoder(net, z, width), b, (ch, height, width), record)
    return out


def naive_subset(net, x, z, positions):
    """Logits at the given raster positions, each from one full pass on the image decoded so far."""
    width = x.shape[3]
    flat = x.flatten(2)
    out = []
    for p in positions:
        partial = torch.zeros_like(flat)
        partial[:, :, :p] = flat[:, :, :p]
        i, j = divmod(p, width)
        out.append(naive_logits(net, partial.view_as(x), z, i, j, 0, x[:, :, i, j]))
    return torch.stack(out, -1)


def best_time(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--naive-pixels", type=int, default=49, help="pixels timed on the naive path")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings per path")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--model", help="a trained model file (its decoder is timed)")
    ap.add_argument("--data", help="images for --model (e.g. binarized-mnist:test)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    b, s = args.batch, args.size
    if args.model:
        import acncodec
        from acncodec.train import to_tensor
        model = acncodec.load_model(args.model)
        cfg, net = model.config, model.net.decoder.eval()
        x = to_tensor(acncodec.load(args.data, levels=model.spec.levels).images[:b]).long()
        s, levels = x.shape[-1], model.spec.levels
        with torch.no_grad():
            z = model.net.encoder(x) + torch.randn(b, cfg.latent_dim)
    else:
        cfg = ModelConfig()
        net = GatedPixelCNN(1, 2, cfg.latent_dim, cfg.decoder_channels, cfg.decoder_layers, cfg.decoder_kernel,
                            height=s, width=s, cond_channels=cfg.decoder_cond_channels).eval()
        x = torch.randint(0, 2, (b, 1, s, s))
        z = torch.randn(b, cfg.latent_dim)
        levels = 2
    pixels = s * s
    n = max(min(args.naive_pixels, pixels), 2)
    positions = sorted({round(k * (pixels - 1) / (n - 1)) for k in range(n)})

    with torch.no_grad():
        ref = net.logits(x, z)                                   # warm-up, and the reference for the check
        naive_subset(net, x, z, positions[:2])
        t_naive_sub, naive = best_time(lambda: naive_subset(net, x, z, positions), args.repeats)
        t_inc, inc = best_time(lambda: incremental_all(net, x, z), args.repeats)
    t_naive = t_naive_sub / len(positions) * pixels

    flat_inc = inc.flatten(3)[:, 0, :, positions]
    record = {
        "image": f"{s}x{s}, {levels} levels", "batch": b, "model": args.model, "data": args.data,
        "decoder": {"channels": cfg.decoder_channels, "layers": cfg.decoder_layers,
                    "kernel": cfg.decoder_kernel, "latent_dim": cfg.latent_dim},
        "naive": {"seconds_per_batch": t_naive, "images_per_s": b / t_naive,
                  "timed_pixels": len(positions), "extrapolated_to": pixels,
                  "seconds_timed": t_naive_sub},
        "incremental": {"seconds_per_batch": t_inc, "images_per_s": b / t_inc},
        "speedup": t_naive / t_inc,
        "max_abs_diff_incremental_vs_full_pass": (inc - ref).abs().max().item(),
        "max_abs_diff_incremental_vs_naive": (flat_inc - naive).abs().max().item(),
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    print(f"machine: {record['machine']['platform']}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); batch {b} of {s}x{s} images with {levels} levels, "
          f"decoder {cfg.decoder_channels}ch x {cfg.decoder_layers} layers, kernel {cfg.decoder_kernel}; "
          f"best of {args.repeats}")
    print(f"naive:       {b / t_naive:9.3f} images/s  ({t_naive:8.2f} s/batch, extrapolated from "
          f"{len(positions)} of {pixels} pixels timed: {t_naive_sub:.2f} s)")
    print(f"incremental: {b / t_inc:9.3f} images/s  ({t_inc:8.3f} s/batch, all {pixels} pixels)")
    print(f"speed-up:    {record['speedup']:.1f}x")
    print(f"max |incremental - full pass| over all pixels: "
          f"{record['max_abs_diff_incremental_vs_full_pass']:.3g}; "
          f"max |incremental - naive| on timed pixels: {record['max_abs_diff_incremental_vs_naive']:.3g}")
    record.update(provenance())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
