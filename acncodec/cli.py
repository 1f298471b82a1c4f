"""The `acncodec` command line: a thin layer over the Python API."""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import signal
import sys
from pathlib import Path

import click

from .config import ModelConfig, TrainConfig
from .errors import AcnError
from .fileio import atomic_write_bytes, check_folder_output, check_writable, same_file, write_bytes
from .header import ORDERS


class _OnFirstUse:
    """A module imported when first used: a command loads only what it needs, so reading and refusing an
    archive does not wait for torch."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


torch = _OnFirstUse("torch")
api, codec, datamod, registry = (_OnFirstUse(f"acncodec.{m}") for m in ("api", "codec", "data", "registry"))


def one_line(text: str) -> str:
    """A message as one printable line: text from files and archives may hold escapes and newlines."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def friendly_errors(fn):
    """Turn expected failures into one line on stderr and a non-zero exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AcnError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(1)
        except OSError as e:     # a file problem no check foresaw (permissions, a full disk): still one line
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


def data_option_help() -> str:
    return ("DATA is a folder of images, a .npy/.npz file, an IDX file (plain or gzipped) or a built-in name: "
            "digits, mnist, binarized-mnist, fashion-mnist, optionally with :SPLIT[:COUNT] "
            "(e.g. binarized-mnist:test).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="acncodec")
def main():
    """Lossless compression of image datasets with Associative Compression Networks."""
    # `kill` (SIGTERM) cleans up like Ctrl-C: temporary outputs are removed, nothing partial is left.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@main.command(help="Train an ACN on DATA and write the model file. " + data_option_help())
@click.argument("data")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--steps", type=int, default=None, help="Training steps (default: 20 epochs).")
@click.option("--epochs", type=float, default=None, help="Training length in passes over DATA.")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=TrainConfig.learning_rate, show_default=True)
@click.option("--neighbours", "-k", type=int, default=TrainConfig.neighbours, show_default=True,
              help="K: the prior is conditioned on a code drawn from the K nearest.")
@click.option("--unique-neighbours", is_flag=True, help="Use each code as a neighbour at most once per pass.")
@click.option("--ema-decay", type=float, default=TrainConfig.ema_decay, show_default=True)
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--threads", type=int, default=TrainConfig.threads, show_default=True)
@click.option("--latent-dim", type=int, default=ModelConfig.latent_dim, show_default=True)
@click.option("--prior-components", type=int, default=ModelConfig.prior_components, show_default=True)
@click.option("--prior-hidden", type=int, default=ModelConfig.prior_hidden, show_default=True,
              help="Hidden units per layer of the conditional prior's MLP.")
@click.option("--encoder-channels", type=int, default=ModelConfig.encoder_channels, show_default=True)
@click.option("--encoder-hidden", type=int, default=ModelConfig.encoder_hidden, show_default=True)
@click.option("--decoder-channels", type=int, default=ModelConfig.decoder_channels, show_default=True)
@click.option("--decoder-layers", type=int, default=ModelConfig.decoder_layers, show_default=True)
@click.option("--decoder-kernel", type=int, default=ModelConfig.decoder_kernel, show_default=True)
@click.option("--decoder-cond-channels", type=int, default=ModelConfig.decoder_cond_channels, show_default=True,
              help="Channels of the spatial map through which z reaches the decoder.")
@click.option("--kl-warmup", type=int, default=TrainConfig.kl_warmup, show_default=True,
              help="Steps over which the KL weight rises from 0 to 1.")
@click.option("--bucket-bits", type=int, default=TrainConfig.bucket_bits, show_default=True,
              help="Latent discretisation: 2^b equal-mass buckets per dimension (bench/bucket_precision.py).")
@click.option("--binarize", is_flag=True, help="Binarize 8-bit data (fixed-seed stochastic) before training.")
@click.option("--levels", type=int, default=None,
              help="Grey levels of the model when 8-bit files hold fewer (e.g. 17 for digits saved as PNG).")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start from scratch.")
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@friendly_errors
def train(data, output, steps, epochs, batch_size, learning_rate, neighbours, unique_neighbours, ema_decay,
          seed, threads, latent_dim, prior_components, prior_hidden, encoder_channels, encoder_hidden,
          decoder_channels, decoder_layers, decoder_kernel, decoder_cond_channels, kl_warmup, bucket_bits,
          binarize, levels, fresh, force, quiet):
    from .train import Trainer, checkpoint_path, epochs_to_steps
    check_writable(output, force)
    images = datamod.load(data, binarize=binarize, levels=levels)
    if steps is None:
        steps = epochs_to_steps(20.0 if epochs is None else epochs, len(images), batch_size)
    config = TrainConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                         neighbours=neighbours, unique_neighbours=unique_neighbours, ema_decay=ema_decay,
                         seed=seed, threads=threads, kl_warmup=kl_warmup, bucket_bits=bucket_bits)
    model_config = ModelConfig(latent_dim=latent_dim, prior_components=prior_components,
                               prior_hidden=prior_hidden, encoder_channels=encoder_channels,
                               encoder_hidden=encoder_hidden, decoder_channels=decoder_channels,
                               decoder_layers=decoder_layers, decoder_kernel=decoder_kernel,
                               decoder_cond_channels=decoder_cond_channels)
    ckpt = checkpoint_path(Path(output))
    if fresh and ckpt.exists():
        ckpt.unlink()
    click.echo(f"training on {images.source}: {len(images)} images, {images.spec}", err=True)
    trainer = Trainer(images, output, model_config, config, resume=True,
                      meta={"command": "acncodec train " + " ".join(sys.argv[2:])})
    if trainer.step:
        click.echo(f"resuming from {ckpt} at step {trainer.step}", err=True)
    model = trainer.run(progress=not quiet)
    sel = model.meta["unconditional_selection"]
    click.echo(f"wrote {output} (hash {model.hash[:12]}; {model.meta['steps']} steps, "
               f"{model.meta['train_seconds']:.0f} s; unconditional prior: {sel['components']} components)")


def data_and_model(data: str, model_path: str | None):
    """DATA, and the model given (a file or a shipped name) or else the shipped one that fits, said on stderr."""
    if model_path is not None:
        model = registry.load_model(model_path)   # a missing model fails before a large dataset loads
        spec = model.spec
        return datamod.load(data, shape=(spec.height, spec.width, spec.channels)), model
    images = datamod.load(data)
    entry = registry.pick_for(images)
    click.echo(f"model: shipped {entry.name} ({entry.spec}, hash {entry.hash[:12]}, trained on {entry.trained_on})",
               err=True)
    return images, entry.load()


def print_report(report: dict) -> None:
    """The compress report: sizes by section, rates, the estimate beside the actual, speed."""
    sec = report["section_bytes"]
    click.echo(f"{report['n']} images from {report['source']} -> {report['bytes']:,} bytes "
               f"({report['order']} order, {report['chains']} chains, {report['rounds']} rounds)")
    click.echo("  sections: " + ", ".join(f"{k} {v:,} B" for k, v in sec.items()))
    click.echo(f"  actual:   {report['bits_per_dim']:.4f} bits/dim, {report['nats_per_image']:.2f} nats/image")
    if "estimate_nats_per_image" in report:
        click.echo(f"  estimate: {report['estimate_bits_per_dim']:.4f} bits/dim, "
                   f"{report['estimate_nats_per_image']:.2f} nats/image ({report['estimate_formula']})")
        click.echo(f"  actual/estimate {report['actual_over_estimate']:.4f} (archive without the names section: "
                   f"{report['nats_per_image_without_names']:.2f} nats/image)")
    if "names_bits_per_image" in report:
        click.echo(f"  names:    {sec['names']:,} B = {report['names_bits_per_image']:.2f} bits/image "
                   f"(log2(N!)/N = {report['log2_n_factorial_per_image']:.2f} bits/image)")
    if "order_estimates_nats_per_image" in report:
        what = "estimates" if report["order_estimates_include_reconstruction"] else "estimates without the " \
            "reconstruction term, which all modes share"
        click.echo(f"  order:    auto picked {report['order']}; {what}, names included: " + ", ".join(
            f"{m} {v:.2f}" for m, v in report["order_estimates_nats_per_image"].items()) + " nats/image")
    if "order_refund_nats_per_image" in report:
        click.echo(f"  order refund: {report['order_refund_nats_per_image']:.2f} nats/image "
                   f"(log N! - sum log m_i!, bits back on the order of the set)")
    click.echo(f"  initial bits: {report['initial_bits']} bits; tour {report['tour_seconds']:.1f} s; "
               f"{report['compress_images_per_second']:.1f} images/s")


@main.command()
@click.argument("data")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--model", "-m", "model_path", default=None,
              help="Model file (acncodec train) or a shipped model's name (default: the shipped model that "
                   "fits the data; see `acncodec models`).")
@click.option("--order", type=click.Choice(("auto",) + ORDERS), default="auto", show_default=True,
              help="auto: the mode with the smallest estimated archive, names included; "
                   "tour: the ACN protocol (data come back in tour order, names travel with them); "
                   "original: input order, latents under the unconditional prior; "
                   "set: the data as a multiset, latents under the unconditional prior with the order's "
                   "log2(N!) bits refunded (arrays come back sorted by pixel bytes); "
                   "associative: set, with latents pointing at the data already decoded.")
@click.option("--chains", type=int, default=None,
              help="Parallel chains (default: about N/100, at most 128; at most 1,024).")
@click.option("--no-estimate", is_flag=True, help="Skip the KL-bound estimate in the report.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT and the --json file if they exist.")
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def compress(data, output, model_path, order, chains, no_estimate, json_out, force, quiet):
    """Compress DATA (a folder of images, an array file or a built-in dataset) into OUTPUT."""
    check_writable(output, force)
    if json_out:
        check_writable(json_out, force)
        if os.path.abspath(json_out) == os.path.abspath(output) or same_file(json_out, output):
            raise AcnError(f"{json_out}: --json names the archive itself; give another file")
    images, model = data_and_model(data, model_path)
    blob, report = codec.compress(images, model, order=order, chains=chains, progress=not quiet,
                                  estimate=not no_estimate)
    write_bytes(output, blob, force)
    print_report(report)
    if json_out:
        write_bytes(json_out, json.dumps(report, indent=2).encode(), force, keep=[Path(output)])


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path())
@click.option("--model", "-m", "model_path", default=None,
              help="Model file or shipped model's name (default: the shipped model named by the archive).")
@click.option("--force", is_flag=True,
              help="Overwrite files of the same name (an array file OUTPUT, or the images' files in the folder "
                   "OUTPUT). Other files in the folder are never touched.")
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def decompress(archive, output, model_path, force, quiet):
    """Restore the images of ARCHIVE: PNG files into the folder OUTPUT (new or existing), or an array into
    OUTPUT (.npy)."""
    from .archive import parse
    from .names import check_names
    with open(archive, "rb") as f:
        blob = f.read()
    parsed = parse(blob, archive)   # damaged archives fail here, fast, before torch and the model load
    if parsed.names is not None:
        check_folder_output(output, check_names(parsed.names, archive), force, keep=[Path(archive)])
    else:
        check_writable(output, force)
    warning = codec.version_warning(parsed.header)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    model = (registry.for_archive(parsed.header, archive).load() if model_path is None
             else registry.load_model(model_path))
    images, header = codec.decompress(parsed, model, where=archive, progress=not quiet)
    written = codec.write_output(images, header, output, force, keep=(Path(archive),))
    click.echo(f"restored {len(images)} images into {written} (checksum verified)")


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@friendly_errors
def info(archive):
    """Show an archive's header and section sizes without decoding it."""
    with open(archive, "rb") as f:
        blob = f.read()
    from .archive import describe
    click.echo(json.dumps(describe(blob, where=archive), indent=2, ensure_ascii=False))


@main.command()
@click.argument("data")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--binarize", is_flag=True, help="Binarize 8-bit data (fixed-seed stochastic) first.")
@friendly_errors
def export(data, folder, binarize):
    """Write DATA as a folder of PNG files (the inverse of reading a folder)."""
    images = datamod.load(data, binarize=binarize)
    names = datamod.export_png(images, folder, names=images.names)
    click.echo(f"wrote {len(names)} PNG files to {folder}")


@main.command()
@click.argument("expected")
@click.argument("actual")
@friendly_errors
def compare(expected, actual):
    """Check that two datasets hold the same images: by name for folders, in order for arrays."""
    a, b = datamod.load(expected), datamod.load(actual)
    n = codec.compare_images(a, b)
    click.echo(f"identical: {n} images, every pixel equal")


ESTIMATE_ROWS = [("kl_k1", "KL(K=1)"), ("kl_k5", "KL(K=5)"), ("kl_tour", "KL(greedy tour)"),
                 ("kl_k10", "KL(K=10)"), ("kl_unconditional", "KL(unconditional)"),
                 ("reconstruction", "reconstruction"), ("ordered", "ordered <="), ("unordered", "unordered"),
                 ("set", "set (order refunded)"), ("order_cost", "ln(N!)/N (order)")]


@main.command()
@click.argument("data")
@click.option("--model", "-m", "model_path", default=None,
              help="Model file or shipped model's name (default: the shipped model that fits the data).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--quiet", "-q", is_flag=True)
@friendly_errors
def estimate(data, model_path, as_json, quiet):
    """The paper's Table 2 for DATA: KLs, reconstruction, ordered and unordered cost (nats/image, bits/dim)."""
    images, model = data_and_model(data, model_path)
    figures = api.estimate(images, model, progress=not quiet)
    dims = model.spec.height * model.spec.width * model.spec.channels
    if as_json:
        click.echo(json.dumps({"data": data, "model_hash": model.hash, "nats_per_image": figures,
                               "bits_per_dim": {k: v / dims / math.log(2) for k, v in figures.items() if k != "n"}},
                              indent=2))
        return
    click.echo(f"{images.source}: {figures['n']} images, model {model.hash[:12]}")
    click.echo(f"{'':22}{'nats/image':>12}{'bits/dim':>10}")
    for key, label in ESTIMATE_ROWS:
        if key in figures:
            click.echo(f"{label:22}{figures[key]:12.2f}{figures[key] / dims / math.log(2):10.4f}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@friendly_errors
def models(as_json):
    """List the reference models shipped with acncodec (usable by name wherever a model is asked for)."""
    entries = registry.shipped()
    if as_json:
        click.echo(json.dumps([{**e.to_dict(), "path": str(e.path)} for e in entries], indent=2))
        return
    if not entries:
        click.echo("no shipped models in this installation")
    for e in entries:
        size = e.path.stat().st_size / 1e6 if e.path.exists() else float("nan")
        click.echo(f"{e.name:16} {str(e.spec):24} hash {e.hash[:12]}  {size:.1f} MB  {e.description}")
        click.echo(f"{'':16} trained on {e.trained_on}: {e.command}")


@main.command(name="model-info")
@click.argument("model")
@friendly_errors
def model_info(model):
    """Show a model file's data spec, configuration, hash and training record."""
    m = registry.load_model(model)
    click.echo(json.dumps({"hash": m.hash, "spec": m.spec.to_dict(), "config": m.config.to_dict(),
                           "unconditional_components": m.unconditional.components, "meta": m.meta}, indent=2))


# ===================================================================================================== BEGIN
# Representation tools (paper sections 3.1 and 3.2): sample, reconstruct, daydream, neighbours, probe.
# Everything lives in acncodec/represent.py; these commands only parse options and draw grids.

def _represent_options(fn, seed=True):
    """-o/--output, --seed, --scale and --force, shared by the commands that draw a PNG grid."""
    fn = click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")(fn)
    fn = click.option("--scale", type=click.IntRange(min=1), default=None,
                      help="Integer upscale of each image (default: images at least 32 pixels tall).")(fn)
    if seed:
        fn = click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")(fn)
    return click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                        help="PNG file to write.")(fn)


@main.command(name="sample")
@click.argument("model")
@click.option("-n", "count", type=click.IntRange(min=1), default=64, show_default=True, help="Images to draw.")
@_represent_options
@friendly_errors
def sample_command(model, count, output, seed, scale, force):
    """Draw images from MODEL: z from the unconditional prior p(z), then x from r(x|z); write a PNG grid."""
    from . import represent
    check_writable(output, force)
    torch.set_num_threads(codec.CODING_THREADS)
    m, _ = represent.load_matched(model)
    images = represent.sample(m, count, seed)
    grid = represent.grid_png(represent.chunk(images, math.ceil(math.sqrt(count))), m.spec.levels, output,
                              scale=scale, force=force)
    click.echo(f"wrote {output}: {count} samples ({grid.shape[1]}x{grid.shape[0]} pixels)")


@main.command(name="reconstruct", help="Reconstruct the first N images of DATA from their codes z = E(x): rows "
              "of originals above rows of reconstructions (16 per row). " + data_option_help())
@click.argument("model")
@click.argument("data")
@click.option("-n", "count", type=click.IntRange(min=1), default=16, show_default=True, help="Images to show.")
@_represent_options
@friendly_errors
def reconstruct_command(model, data, count, output, seed, scale, force):
    from . import represent
    check_writable(output, force)
    torch.set_num_threads(codec.CODING_THREADS)
    m, images = represent.load_matched(model, data)
    originals = images.images[:count]
    rebuilt = represent.reconstruct(m, originals, seed)
    rows = []
    for a, b in zip(represent.chunk(originals, 16), represent.chunk(rebuilt, 16)):
        rows += [a, b]
    grid = represent.grid_png(rows, m.spec.levels, output, scale=scale, force=force)
    click.echo(f"wrote {output}: {len(originals)} originals and reconstructions "
               f"({grid.shape[1]}x{grid.shape[0]} pixels)")


@main.command(name="daydream", help="Daydream from images of DATA: encode, draw z from the ACN prior "
              "p(z|code), decode by sampling, repeat. One row per chain: its start image, then every step. "
              + data_option_help())
@click.argument("model")
@click.argument("data")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the first chain's start image; chain r starts at START + r.")
@click.option("--steps", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--rows", type=click.IntRange(min=1), default=4, show_default=True, help="Chains.")
@_represent_options
@friendly_errors
def daydream_command(model, data, start, steps, rows, output, seed, scale, force):
    from . import represent
    check_writable(output, force)
    torch.set_num_threads(codec.CODING_THREADS)
    m, images = represent.load_matched(model, data)
    if start + rows > len(images):
        raise AcnError(f"{images.source}: has {len(images)} images; --start {start} with --rows {rows} "
                       f"needs {start + rows}")
    chains = represent.daydream(m, images.images[start:start + rows], steps, seed)
    grid = represent.grid_png(list(chains), m.spec.levels, output, scale=scale, force=force)
    click.echo(f"wrote {output}: {rows} chains of {steps} steps from images {start}..{start + rows - 1} "
               f"({grid.shape[1]}x{grid.shape[0]} pixels)")


@main.command(name="neighbours", help="Nearest other images of DATA: for each query, a row of its K nearest "
              "in code space, then a row of its K nearest in pixel space (each row starts with the query). "
              + data_option_help())
@click.argument("model")
@click.argument("data")
@click.option("--queries", default="0,1,2", show_default=True, help="Comma-separated image indices.")
@click.option("-k", "k", type=click.IntRange(min=1), default=8, show_default=True)
@functools.partial(_represent_options, seed=False)  # deterministic: no random draws
@friendly_errors
def neighbours_command(model, data, queries, k, output, scale, force):
    from . import represent
    try:
        chosen = [int(q) for q in queries.split(",") if q.strip()]
    except ValueError:
        raise AcnError(f"--queries must be comma-separated image indices, got {queries!r}") from None
    if not chosen:
        raise AcnError("--queries names no image")
    check_writable(output, force)
    torch.set_num_threads(codec.CODING_THREADS)
    m, images = represent.load_matched(model, data)
    found = represent.neighbours(m, images, chosen, k)
    x = images.images
    rows = []
    for n, q in enumerate(chosen):
        rows += [x[[q, *found["code"][n]]], x[[q, *found["pixel"][n]]]]
    grid = represent.grid_png(rows, m.spec.levels, output, scale=scale, force=force)
    for n, q in enumerate(chosen):
        click.echo(f"query {q}: code {' '.join(map(str, found['code'][n]))} | "
                   f"pixel {' '.join(map(str, found['pixel'][n]))}")
    click.echo(f"wrote {output} ({grid.shape[1]}x{grid.shape[0]} pixels)")


@main.command(name="probe", help="Linear probe (paper, Table 3): logistic regression on standardised ACN codes, "
              "pixels and PCA components of the pixels, fitted on TRAIN_DATA, accuracy on TEST_DATA. Labels "
              "default to the built-in ones for built-in data names; otherwise give IDX or .npy label files. "
              + data_option_help())
@click.argument("model")
@click.argument("train_data")
@click.argument("test_data")
@click.option("--train-labels", default=None, help="Labels of TRAIN_DATA (IDX or .npy).")
@click.option("--test-labels", default=None, help="Labels of TEST_DATA (IDX or .npy).")
@click.option("--pca-components", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
@click.option("--force", is_flag=True, help="Overwrite the --json file if it exists.")
@friendly_errors
def probe_command(model, train_data, test_data, train_labels, test_labels, pca_components, seed, json_out,
                  force):
    from . import represent
    if json_out:
        check_writable(json_out, force)
    labels = []
    for data, given, flag in ((train_data, train_labels, "--train-labels"), (test_data, test_labels,
                                                                             "--test-labels")):
        if given is None and not represent.is_builtin(data):
            raise AcnError(f"{data}: not a built-in data set, so its labels must be given with {flag}")
        labels.append(represent.load_labels(given if given is not None else data))
    torch.set_num_threads(codec.CODING_THREADS)
    m, train_images = represent.load_matched(model, train_data)
    test_images = codec.match_model(datamod.load(test_data), m)
    for images, y, flag in ((train_images, labels[0], "--train-labels"), (test_images, labels[1],
                                                                          "--test-labels")):
        if len(images) != len(y):
            raise AcnError(f"{images.source}: {len(images)} images but {len(y)} labels ({flag})")
    result = represent.probe(m, train_images, labels[0], test_images, labels[1], pca_components, seed)
    click.echo(f"linear probe: train {train_images.source} ({result['n_train']}), test {test_images.source} "
               f"({result['n_test']}), {result['classes']} classes")
    names = {"code": "ACN codes", "pixels": "pixels", "pca": "PCA of pixels"}
    for key, label in names.items():
        note = "" if result["converged"][key] else "  (not converged)"
        click.echo(f"  {label:14}{result['dims'][key]:6d} dims  {100 * result['accuracy'][key]:6.2f}%{note}")
    if json_out:
        record = {"model_hash": m.hash, "train_data": train_data, "test_data": test_data, **result}
        atomic_write_bytes(json_out, (json.dumps(record, indent=2) + "\n").encode())
# ======================================================================================================= END



if __name__ == "__main__":
    main()
