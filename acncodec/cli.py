"""The `acncodec` command line: a thin layer over the Python API.

Each command imports what it needs when it runs, so `acncodec --version` and `--help` do not wait for torch.
Conventions of gzip/xz/zstd: `-` is standard input or output, `-o` names the output, a default output name
is derived from the input, `-q` prints nothing but errors and `-v` prints more. Outputs go only into
folders that exist: a mistyped folder is an error, not a new folder.
"""

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

from .config import COVARIANCES, LR_SCHEDULES, VARIANTS, ModelConfig, TrainConfig
from .errors import AcnError
from .fileio import atomic_write_bytes, check_folder_output, same_file, write_bytes

ORDERS = ("tour", "original", "set", "associative")   # header.ORDERS, without importing numpy for --help and --version


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
        except KeyboardInterrupt as e:
            click.echo(str(e) or "interrupted", err=True)
            sys.exit(130)
    return wrapper


def data_option_help(stdin: bool = False) -> str:
    return ("DATA is a folder of images, a .npy/.npz file" + (" (- reads one from standard input)" if stdin else "")
            + ", an IDX file (plain or gzipped) or a built-in name: digits, mnist, binarized-mnist, fashion-mnist, "
            "optionally with :SPLIT[:COUNT] (e.g. binarized-mnist:test).")


def check_output_folder(path: str | Path) -> None:
    """Outputs go into folders that exist: creating one from a mistyped path would hide the mistake."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise AcnError(f"{path}: folder {parent} does not exist (acncodec does not create folders)")


def check_writable(path: str | Path, force: bool) -> None:
    from .fileio import check_writable as check
    check(path, force)
    check_output_folder(path)


def one_output(argument: str | None, option: str | None, what: str) -> str | None:
    if argument is not None and option is not None and argument != option:
        raise AcnError(f"two {what}s given: {argument} and -o {option}")
    return argument if argument is not None else option


def read_stdin() -> bytes:
    if sys.stdin.isatty():
        raise AcnError("standard input is a terminal; pipe a file into it or give a file name")
    return sys.stdin.buffer.read()


def write_stdout(blob: bytes, what: str) -> None:
    if sys.stdout.isatty():
        raise AcnError(f"will not write {what} to a terminal; redirect standard output or give a file name")
    sys.stdout.buffer.write(blob)
    sys.stdout.buffer.flush()


def load_data(data: str, levels: int | None = None, binarize: bool = False, shape=None):
    """`shape` (height, width, channels), when the model is known, refuses other images before decoding them."""
    from . import data as datamod
    if data == "-":
        if binarize:
            raise AcnError("--binarize needs DATA as a file, not standard input")
        return datamod.load_bytes(read_stdin(), "<stdin>", levels)
    return datamod.load(data, binarize=binarize, levels=levels, shape=shape)


WORKERS = click.option("--workers", "-w", type=click.IntRange(1, 1024), default=os.cpu_count() or 1,
                       show_default="this machine's cores",
                       help="Processes that code shards side by side (the archive's bytes do not depend on it).")
CLUSTER = click.option("--cluster", default=None, metavar="ADDRESS",
                       help="Code the shards on a running Ray cluster (host:port of its head; needs "
                            "pip install 'acncodec[cluster]'), instead of --workers.")
QUIET = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (no report, no progress bar).")
FORCE = click.option("--force", "-f", is_flag=True, help="Overwrite OUTPUT if it exists.")
TOUR_PRIOR = click.option(
    "--tour-prior", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
    help="Before quantising, fit the conditional prior to the steps of the codec's tours through N of the "
         "training codes at a time (the size of the sets you will compress; acncodec.tour_prior). 0 keeps the "
         "prior as trained.")
TOUR_PRIOR_STEPS = click.option("--tour-prior-steps", type=click.IntRange(min=1), default=1000, show_default=True,
                                help="Adam steps of that fit, 512 tour steps each.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="acncodec", message="%(prog)s %(version)s")
def main():
    """Lossless compression of image datasets with Associative Compression Networks.

    \b
    acncodec compress my_images/              # -> my_images.acnz, with the shipped model that fits
    acncodec decompress my_images.acnz -o restored/
    acncodec compare my_images/ restored/
    """
    # `kill` (SIGTERM) cleans up like Ctrl-C: temporary outputs are removed, nothing partial is left.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# The shipped models had 3,000 (digits, Fashion-MNIST) and 6,000 (binarized MNIST) steps and beat xz; a shorter
# run is warned about before it goes on (measured on 520 colour patches: bench/own_model_colour.py).
STEPS_SHIPPED_MODELS_HAD = 3000


@main.command(help="Train an ACN on DATA and write the model file. Without --steps or --epochs the run is as "
              "long as fits in --minutes (measured on the first steps, said before the run goes on). Ctrl-C "
              "or kill writes a checkpoint; the same command again continues from it. " + data_option_help(True))
@click.argument("data")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--minutes", type=float, default=TrainConfig.minutes, show_default=True,
              help="Time budget that sets the number of steps when neither --steps nor --epochs is given.")
@click.option("--max-epochs", type=float, default=TrainConfig.max_epochs, show_default=True,
              help="At most this many passes over DATA when the time budget sets the length.")
@click.option("--steps", type=int, default=None, help="Training steps (overrides the time budget).")
@click.option("--epochs", type=float, default=None, help="Training length in passes over DATA (overrides the "
              "time budget).")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True,
              help="Images per training step.")
@click.option("--lr", "learning_rate", type=float, default=TrainConfig.learning_rate, show_default=True,
              help="Adam's learning rate.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=TrainConfig.lr_schedule,
              show_default=True, help="constant, or cosine: annealed from --lr down to 0 at the run's last step.")
@click.option("--neighbours", "-k", type=int, default=TrainConfig.neighbours, show_default=True,
              help="K: the prior is conditioned on a code drawn from the K nearest.")
@click.option("--unique-neighbours", is_flag=True, help="Use each code as a neighbour at most once per pass.")
@click.option("--neighbour-pool", type=int, default=None,
              help="Search the K nearest among this many codes, drawn afresh each step, instead of among all: "
                   "neighbours as far apart as in a set of this size, the set the model will code.")
@click.option("--ema-decay", type=float, default=TrainConfig.ema_decay, show_default=True,
              help="Decay of the weight average that the model file keeps.")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True, help="Seed of every random draw.")
@click.option("--threads", type=int, default=TrainConfig.threads, show_default=True, help="CPU threads to use.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=TrainConfig.device,
              show_default=True, help="Where to train: auto takes CUDA, then MPS, then the CPU. Compression and "
              "decompression always run on the CPU.")
@click.option("--variant", type=click.Choice(VARIANTS), default=TrainConfig.variant, show_default=True,
              help="acn; or, for comparison, pixelvae (one learned mixture prior for all data, no neighbour) or "
                   "pixelcnn (the decoder does not read z).")
@click.option("--latent-dim", type=int, default=ModelConfig.latent_dim, show_default=True,
              help="Dimensions of the code z.")
@click.option("--prior-components", type=int, default=ModelConfig.prior_components, show_default=True,
              help="Mixture components per latent dimension of the conditional prior.")
@click.option("--prior-hidden", type=int, default=ModelConfig.prior_hidden, show_default=True,
              help="Hidden units per layer of the conditional prior's MLP.")
@click.option("--encoder-channels", type=int, default=ModelConfig.encoder_channels, show_default=True,
              help="Channels of the encoder's convolutions.")
@click.option("--encoder-hidden", type=int, default=ModelConfig.encoder_hidden, show_default=True,
              help="Hidden units of the encoder's last layer.")
@click.option("--decoder-channels", type=int, default=ModelConfig.decoder_channels, show_default=True,
              help="Channels of the PixelCNN decoder.")
@click.option("--decoder-layers", type=int, default=ModelConfig.decoder_layers, show_default=True,
              help="Gated layers of the PixelCNN decoder.")
@click.option("--decoder-kernel", type=int, default=ModelConfig.decoder_kernel, show_default=True,
              help="Kernel size of the PixelCNN decoder.")
@click.option("--decoder-cond-channels", type=int, default=ModelConfig.decoder_cond_channels, show_default=True,
              help="Channels of the spatial map through which z reaches the decoder.")
@click.option("--kl-warmup", type=int, default=None,
              help="Steps over which the KL weight rises from 0 to 1 (default: "
                   f"{TrainConfig.kl_warmup_fraction:.0%} of the run).")
@click.option("--bucket-bits", type=int, default=TrainConfig.bucket_bits, show_default=True,
              help="Latent discretisation: 2^b equal-mass buckets per dimension (bench/bucket_precision.py).")
@click.option("--binarize", is_flag=True, help="Binarize 8-bit data (fixed-seed stochastic) before training.")
@click.option("--levels", type=int, default=None,
              help="Levels of the data: 17 for digits saved as PNG (8-bit values on a 17-level grid) or held "
                   "as an array of values 0..16.")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start from scratch.")
@click.option("--init", "init_model", default=None, metavar="MODEL",
              help="Start from this model's networks (a file or a shipped name; an exact model's integer maps "
                   "give its float network) instead of random weights: training it further. Its network sizes "
                   "and variant are the run's; the KL warm-up defaults to none.")
@click.option("--keep-checkpoint", is_flag=True, help="Keep OUTPUT.ckpt after the model is written (to train "
              "it further later); by default it is removed.")
@click.option("--prior-covariance", type=click.Choice(COVARIANCES), default="full", show_default=True,
              help="Covariances of p(z), the unconditional prior (fitted after training to the codes of DATA): "
                   "full fits the codes better and is coded by the exact numerics; with --no-quantize p(z) is "
                   "diagonal.")
@TOUR_PRIOR
@TOUR_PRIOR_STEPS
@click.option("--no-quantize", is_flag=True,
              help="Keep float numerics: skip `acncodec quantize` (archives then decode only on machines that "
                   "compute exactly like this one).")
@FORCE
@QUIET
@friendly_errors
def train(data, output, minutes, max_epochs, steps, epochs, batch_size, learning_rate, lr_schedule, neighbours,
          unique_neighbours, neighbour_pool, ema_decay, seed, threads, device, variant, latent_dim,
          prior_components, prior_hidden, encoder_channels, encoder_hidden, decoder_channels, decoder_layers,
          decoder_kernel, decoder_cond_channels, kl_warmup, bucket_bits, binarize, levels, fresh, init_model,
          keep_checkpoint, prior_covariance, tour_prior, tour_prior_steps, no_quantize, force, quiet):
    from .baseline import xz_baseline
    from .config import epochs_to_steps
    from .train import Trainer, checkpoint_path, log_path
    check_writable(output, force)
    say = functools.partial(click.echo, err=True) if not quiet else (lambda *a, **k: None)
    images = load_data(data, levels=levels, binarize=binarize)
    if steps is None and epochs is not None:
        steps = epochs_to_steps(epochs, len(images), batch_size)
    init = None
    if init_model is not None:
        from .registry import load_model
        init = load_model(init_model)
        source = click.get_current_context().get_parameter_source
        explicit = {name for name in [*ModelConfig().to_dict(), "variant"]
                    if source(name) == click.core.ParameterSource.COMMANDLINE}
        if "variant" not in explicit:
            variant = init.meta.get("variant", "acn")
        if kl_warmup is None:   # already trained with the full KL
            kl_warmup = 0
    config = TrainConfig(steps=steps, minutes=minutes, max_epochs=max_epochs, batch_size=batch_size,
                         learning_rate=learning_rate, lr_schedule=lr_schedule, neighbours=neighbours,
                         unique_neighbours=unique_neighbours, neighbour_pool=neighbour_pool,
                         ema_decay=ema_decay, seed=seed, threads=threads,
                         device=device, variant=variant, kl_warmup=kl_warmup, bucket_bits=bucket_bits)
    model_config = ModelConfig(latent_dim=latent_dim, prior_components=prior_components,
                               prior_hidden=prior_hidden, encoder_channels=encoder_channels,
                               encoder_hidden=encoder_hidden, decoder_channels=decoder_channels,
                               decoder_layers=decoder_layers, decoder_kernel=decoder_kernel,
                               decoder_cond_channels=decoder_cond_channels)
    if init is not None:   # its sizes, except one given here (a clash is then reported, not trained)
        model_config = ModelConfig(**{k: getattr(model_config, k) if k in explicit else v
                                      for k, v in init.config.to_dict().items()})
    ckpt = checkpoint_path(Path(output))
    if fresh and ckpt.exists():
        ckpt.unlink()
    reference = xz_baseline(images)
    say(f"training on {images.source}: {len(images)} images, {images.spec}; {reference['tool']} stores them in "
        f"{reference['bits_per_dim']:.2f} bits/dim, the size the model must beat")
    trainer = Trainer(images, output, model_config, config, resume=True, keep_checkpoint=keep_checkpoint, init=init,
                      meta={"command": "acncodec train " + " ".join(sys.argv[2:])})
    say(f"device: {trainer.device}" + (f" ({config.threads} threads)" if trainer.device.type == "cpu" else ""))
    if trainer.step:
        say(f"resuming from {ckpt} at step {trainer.step}")
    elif init is not None:
        say(f"starting from {init_model} ({init.hash[:12]}, {init.meta.get('steps', '?')} steps)")

    def announce(t):
        total, rate = t.total_steps, t.seconds_per_step
        left = (total - t.step) * rate
        why = "as given" if config.steps is not None else (
            f"what fits in {minutes:g} min" if total < epochs_to_steps(max_epochs, len(images), batch_size)
            else f"{max_epochs:g} passes over the data")
        say(f"plan: {total:,} steps ({total * batch_size / len(images):.1f} passes over the data; {why}), "
            f"{rate:.2f} s a step here: about {duration(left)} to go; KL warm-up over the first "
            f"{config.warmup_steps(total):,} steps; checkpoints in {ckpt} every {config.checkpoint_minutes:g} min "
            "and on Ctrl-C")
        earlier = (init.meta.get("steps") or 0) if init is not None else 0   # --init: those steps count too
        if earlier + total < STEPS_SHIPPED_MODELS_HAD:
            say(f"warning: {total:,} steps is far fewer than the {STEPS_SHIPPED_MODELS_HAD:,} to 6,000 that each "
                "shipped model was trained for (each beats xz on its data); a model trained this briefly will "
                f"most likely store these images in more than {reference['tool']}'s "
                f"{reference['bits_per_dim']:.2f} bits/dim. Give it more time (--minutes) or use xz for them")

    model = trainer.run(progress=not quiet, on_plan=announce)
    from . import modelfile
    if tour_prior:
        from .train import refit_prior_to_tours
        say(f"fitting the conditional prior to tours through {tour_prior:,} codes at a time")
        model = refit_prior_to_tours(model, images, tour_prior, tour_prior_steps, seed=seed, progress=not quiet)
        fit = model.meta["tour_prior"]
        say(f"held-out tour KL {fit['held_out_tour_kl_before']:.3f} -> {fit['held_out_tour_kl_after']:.3f} nats: "
            + ("fitted prior kept" if fit["kept"] else "the trained prior kept"))
        if no_quantize:   # otherwise the exact model below replaces the file
            modelfile.save(model, output)
    if not no_quantize:   # calibrated on the training images, as `acncodec quantize` would be
        from .quantize import calibration_set, quantise_model
        prior = selection = None
        if prior_covariance != "diag":
            from .train import refit_unconditional
            say(f"fitting p(z) with {prior_covariance} covariances to the codes of the training images")
            prior, selection = refit_unconditional(model, images, prior_covariance, seed=seed)
        model = quantise_model(model, calibration_set(images), prior, selection)
        modelfile.save(model, output)
    if quiet:
        return
    sel = model.meta["unconditional_selection"]
    click.echo(f"wrote {output} (hash {model.hash[:12]}, numerics {model.numerics}; {model.meta['steps']} steps, "
               f"{model.meta['train_seconds']:.0f} s; unconditional prior: {sel['components']} components)")
    if trainer.out_of_time:
        say(f"the {minutes:g}-min budget ran out after {trainer.step:,} steps: the cores were slower than when the "
            "plan was made")
    if trainer.last_loss is not None:
        bpd = trainer.last_loss / math.log(2) / images.images[0].size
        verdict = "worse than" if bpd > reference["bits_per_dim"] else "better than"
        say(f"last training loss {bpd:.2f} bits/dim, {verdict} {reference['tool']}'s "
            f"{reference['bits_per_dim']:.2f}: `acncodec compress` gives the exact size")
    say(f"training log: {log_path(Path(output))}; " + (f"checkpoint kept: {ckpt}" if keep_checkpoint else
                                                         "checkpoint removed (--keep-checkpoint keeps it)"))


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The exact model file.")
@click.option("--data", "-d", required=True,
              help="Training data to calibrate the integer formats on (a few hundred images are used).")
@click.option("--images", "n_images", type=click.IntRange(min=1), default=256, show_default=True,
              help="Calibration images, spread evenly over DATA.")
@click.option("--prior-covariance", type=click.Choice(COVARIANCES), default="diag", show_default=True,
              help="diag keeps MODEL's p(z); full refits it with full covariances to the codes of all of DATA.")
@TOUR_PRIOR
@TOUR_PRIOR_STEPS
@click.option("--numerics", type=click.Choice(["exact1", "exact2"]), default="exact1", show_default=True,
              help="exact2: the decoder's maps narrow (10- to 12-bit inputs, their sums below 2^24), which the coder "
                   "computes in float32, faster than exact1's float64. MODEL may then be an exact1 model: its "
                   "networks are requantised, its tables kept.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@friendly_errors
def quantize(model_path, output, data, n_images, prior_covariance, tour_prior, tour_prior_steps, numerics, force):
    """Make an exact model from MODEL (a file or a shipped name): integer networks and tables, so its
    archives decode bit for bit on any machine."""
    from .quantize import quantise_file
    exact = quantise_file(model_path, data, output, n_images, force, prior_covariance, tour_prior,
                          tour_prior_steps, numerics)
    click.echo(f"wrote {output} (numerics {exact.numerics}, hash {exact.hash[:12]}; "
               f"calibrated on {exact.meta['calibration_images']} images)")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def data_and_model(data: str, model_path: str | None, levels: int | None = None, say=None):
    """DATA, and the model given (a file or a shipped name) or else the shipped one that fits, said on stderr."""
    from . import api, registry
    if model_path is not None:
        model = registry.load_model(model_path)   # a missing model fails before a large dataset loads
        spec = model.spec
        # --levels is declared after loading (values kept, so they come back as they were), not converted
        return api.for_model(api.as_images(load_data(data, shape=(spec.height, spec.width, spec.channels)),
                                           levels), model), model
    images = api.as_images(load_data(data), levels)
    entry, costs = registry.choose_for(images)
    if say is not None:
        say(f"model: shipped {entry.name} ({entry.spec}, hash {entry.hash[:12]}, trained on {entry.trained_on})")
        if costs:
            pixels = images.images[0].size
            say("  chosen by unordered cost on a sample of the images: " + ", ".join(
                f"{name} {c / pixels / math.log(2):.3f} bits/dim" for name, c in costs.items()))
    model = entry.load()
    return api.for_model(images, model), model


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


ESTIMATE_WORDS = {"tour": "reconstruction + KL along the tour", "original": "reconstruction + KL under the "
                  "unconditional prior", "set": "reconstruction + KL under the unconditional prior - the order's "
                  "information", "associative": "reconstruction + KL to the decoded neighbours' priors + pointer "
                  "- the order's information"}


def report_lines(report: dict, verbose: bool = False) -> list[str]:
    """The compress report in words: size, order, the model's own estimate, a classical tool, and warnings."""
    sec = report["section_bytes"]
    lines = [f"{plural(report['n'], 'image')} from {report['source']} -> {report['bytes']:,} bytes, "
             f"{report['bits_per_dim']:.4f} bits/dim ({report['nats_per_image']:.2f} nats/image), "
             f"in {report['compress_seconds']:.1f} s"]
    if report["order"] == "tour":
        lines.append("  order: tour, which makes the archive smaller; " + (
            "file names travel with the images" if report.get("order_kept") else
            "decompress returns the images reordered (`compare --by set` checks them; --order original keeps "
            "the order)"))
    elif report["order"] == "original":
        lines.append("  order: original, kept")
    else:
        lines.append(f"  order: {report['order']}: the images as a set, {report['order_refund_nats_per_image']:.2f} "
                     "nats/image of bits back on their order; decompress returns them in a canonical order"
                     + (" with their file names" if report.get("order_kept") else ""))
    if "order_estimates_nats_per_image" in report:
        what = "estimates" if report["order_estimates_include_reconstruction"] else "estimates without the " \
            "reconstruction term, which all modes share"
        lines.append(f"  auto picked {report['order']}; {what}, names included: " + ", ".join(
            f"{m} {v:.2f}" for m, v in report["order_estimates_nats_per_image"].items()) + " nats/image")
    if "estimate_nats_per_image" in report:
        names = " (file names not included)" if "names_bits_per_image" in report else ""
        lines.append(f"  model's estimate: {report['estimate_bits_per_dim']:.4f} bits/dim, "
                     f"{report['estimate_nats_per_image']:.2f} nats/image ({ESTIMATE_WORDS[report['order']]}); "
                     f"archive{names} {report['nats_per_image_without_names']:.2f} nats/image, "
                     f"{report['actual_over_estimate']:.4f} times the estimate")
    if "names_bits_per_image" in report:
        lines.append(f"  file names: {sec['names']:,} bytes = {report['names_bits_per_image']:.2f} bits/image "
                     f"(the order alone is worth up to {report['log2_n_factorial_per_image']:.2f} bits/image)")
    if "baseline" in report:
        b = report["baseline"]
        sample = "" if b["images"] == report["n"] else f", on the first {b['images']:,} images"
        lines.append(f"  {b['tool']} on the same pixels: {b['bits_per_dim']:.4f} bits/dim{sample}, measured now")
    if verbose:
        lines.append("  sections: " + ", ".join(f"{k} {v:,} bytes" for k, v in sec.items()))
        lines.append(f"  coded as {plural(report['chains'], 'chain')} side by side, in "
                     f"{plural(report['rounds'], 'round')}; the stream starts with {report['initial_bits']} fixed "
                     "bits that the first image's bits-back step draws on")
        tour = f" (tour {report['tour_seconds']:.1f} s)" if report["order"] == "tour" else ""
        lines.append(f"  speed: {report['compress_images_per_second']:.1f} images/s{tour}; model "
                     f"{report['model_hash'][:12]}")
    if report.get("worse_than_baseline"):
        b = report["baseline"]
        lines.append(f"warning: the archive is {report['bits_per_dim'] / b['bits_per_dim'] - 1:.0%} larger than "
                     f"{b['tool']} would make it: the model does not fit these data well (train it longer or on "
                     "more images, or use xz)")
    return lines


def print_report(report: dict, verbose: bool = False, err: bool = False) -> None:
    for line in report_lines(report, verbose):
        click.echo(line, err=err or line.startswith("warning:"))


@main.command(help="Compress DATA into an archive (OUTPUT, or -o; default: DATA's name with .acnz, in the "
              "current folder for built-in names; - writes standard output). " + data_option_help(True))
@click.argument("data")
@click.argument("output", required=False)
@click.option("-o", "--output", "output_option", default=None, help="The archive to write (- for standard output).")
@click.option("--model", "-m", "model_path", default=None,
              help="Model file (acncodec train) or a shipped model's name (default: the shipped model that "
                   "fits the data; see `acncodec models`).")
@click.option("--levels", type=click.IntRange(2, 256), default=None,
              help="Levels of the data, for arrays whose values alone do not say (17: values 0..16 are "
                   "digits' levels).")
@click.option("--order", type=click.Choice(("auto",) + ORDERS), default="auto", show_default=True,
              help="auto: the mode with the smallest estimated archive, names included; "
                   "tour: the ACN protocol (arrays come back in tour order, folders keep their names); "
                   "original: input order kept, latents under the unconditional prior; "
                   "set: the data as a multiset, latents under the unconditional prior with the order's "
                   "log2(N!) bits refunded (arrays come back sorted by pixel bytes); "
                   "associative: set, with latents pointing at the data already decoded.")
@click.option("--chains", type=int, default=None,
              help="Parallel chains (default: one per 32 images, at most 128; at most 1,024).")
@click.option("--shards", type=int, default=None,
              help="Code the data as this many independent shards (default: one per 10,000 images; one shard "
                   "is the one-stream archive). Shards code in parallel and decode one at a time if asked.")
@click.option("--shard-images", type=int, default=None, help="Images per shard, instead of --shards.")
@WORKERS
@CLUSTER
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None,
              help="Keep each finished shard in this folder: the same command run again with it codes only the "
                   "shards not there yet (for runs that may be stopped). Emptied once every shard is done.")
@click.option("--no-estimate", is_flag=True, help="Skip the model's estimate of the size in the report.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@FORCE
@QUIET
@click.option("--verbose", "-v", is_flag=True, help="Also print sections, chains and speed.")
@friendly_errors
def compress(data, output, output_option, model_path, levels, order, chains, shards, shard_images, workers,
             cluster, checkpoint, no_estimate, json_out, force, quiet, verbose):
    from . import api
    from .fileio import atomic_write_bytes
    output = one_output(output, output_option, "output")
    if output is None:
        output = default_archive_name(data)
    to_stdout = output == "-"
    if not to_stdout:
        check_writable(output, force)
    if json_out:
        check_writable(json_out, force)
        if not to_stdout and (os.path.abspath(json_out) == os.path.abspath(output) or same_file(json_out, output)):
            raise AcnError(f"{json_out}: --json names the archive itself; give another file")
    say = (lambda *a, **k: None) if quiet else functools.partial(click.echo, err=True)
    images, model = data_and_model(data, model_path, levels, say)
    blob, report = api.compress(images, model, order=order, chains=chains, progress=not quiet,
                                estimate=not no_estimate, shards=shards, shard_images=shard_images,
                                workers=workers, cluster=cluster, checkpoint=checkpoint)
    if to_stdout:
        write_stdout(blob, "an archive")
    else:
        write_bytes(output, blob, force)
    if not quiet:
        print_report(report, verbose, err=to_stdout)
    if json_out:
        write_bytes(json_out, json.dumps(report, indent=2).encode(), force, keep=[Path(output)])


def default_archive_name(data: str) -> str:
    """gzip's convention: beside the input, with the archive's suffix; built-in names in the current folder."""
    if data == "-":
        return "-"
    path = Path(data.rstrip("/") or data)
    if path.is_file():
        return str(path.with_suffix(".acnz"))
    if path.is_dir():
        return str(path.parent / (path.name + ".acnz"))
    return data.replace(":", "-").replace("/", "-") + ".acnz"


def default_restore_name(archive: str, kind: str) -> str:
    if archive == "-":
        if kind == "folder":
            raise AcnError("this archive holds a folder of images: give the folder to restore into (-o)")
        return "-"
    if not archive.endswith(".acnz"):
        raise AcnError(f"{archive}: does not end in .acnz, so no output name follows from it; give OUTPUT")
    stem = archive[:-len(".acnz")]
    return stem if kind == "folder" else stem + ".npy"


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("output", required=False)
@click.option("-o", "--output", "output_option", default=None,
              help="Folder (folder archives) or .npy file (array archives) to write; - for standard output.")
@click.option("--model", "-m", "model_path", default=None,
              help="Model file or shipped model's name (default: the shipped model named by the archive).")
@click.option("--force", "-f", is_flag=True,
              help="Overwrite files of the same name (an array file OUTPUT, or the images' files in the folder "
                   "OUTPUT). Other files in the folder are never touched.")
@click.option("--shard", "shard_list", type=int, multiple=True,
              help="Restore only this shard (repeat for more); `acncodec info` lists them.")
@click.option("--images", "numbers", default=None, metavar="RANGES",
              help="Restore only these images, by position in the archive from 0 (such as 0-99,500).")
@click.option("--name", "name_list", multiple=True,
              help="Restore only the image of this name (repeat for more; folder archives).")
@WORKERS
@CLUSTER
@QUIET
@click.option("--verbose", "-v", is_flag=True, help="Also print the model, the order and the time taken.")
@friendly_errors
def decompress(archive, output, output_option, model_path, shard_list, numbers, name_list, workers, cluster, force,
               quiet, verbose):
    """Restore the images of ARCHIVE: PNG files into a folder (new or existing), or an array into a .npy file
    (OUTPUT or -o; default: ARCHIVE without .acnz, plus .npy for arrays). ARCHIVE - reads standard input."""
    import time
    from .archive import parse
    from .names import check_names
    output = one_output(output, output_option, "output")
    if archive == "-":
        blob = read_stdin()
    else:
        try:
            blob = Path(archive).read_bytes()
        except OSError as e:
            raise AcnError(f"{archive}: cannot read: {e.strerror or e}") from None
    where = "<stdin>" if archive == "-" else archive
    parsed = parse(blob, where)   # damaged archives fail here, fast, before torch and the model load
    if output is None:
        output = default_restore_name(archive, parsed.kind)
    to_stdout = output == "-"
    if to_stdout and parsed.kind == "folder":
        raise AcnError(f"{where}: holds a folder of images, which cannot go to standard output; give a folder")
    keep = (Path(archive),) if archive != "-" else ()
    from . import codec, registry, sharding   # torch and the model once the archive has been read and checked
    selection = {"shards": list(shard_list) or None, "names": list(name_list) or None,
                 "numbers": None if numbers is None else sharding.parse_numbers(numbers, parsed.header.n, where)}
    if not to_stdout:
        if parsed.names is not None:
            check_folder_output(output, check_names(selected_names(parsed, selection, where), where), force,
                                keep=list(keep))
        else:
            check_writable(output, force)
    warning = codec.version_warning(parsed.header)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    model = (registry.for_archive(parsed.header, where).load() if model_path is None
             else registry.load_model(model_path))
    started = time.perf_counter()
    images, header = sharding.restore(parsed, model, where, **selection, workers=workers, cluster=cluster,
                                      progress=not quiet)
    if to_stdout:
        from .data import npy_bytes
        write_stdout(npy_bytes(images), "an array")
        written = "standard output"
    else:
        written = codec.write_output(images, header, output, force, keep=keep)
    if quiet:
        return
    order = ""
    if header.order != "original" and parsed.kind != "folder":
        order = (f"; in {header.order} order, not the order they were compressed in (the same images as a set: "
                 "`acncodec compare --by set` checks them; compress with --order original to keep the order)")
    click.echo(f"restored {plural(len(images), 'image')} into {written} (checksum verified){order}",
               err=to_stdout)
    if verbose:
        click.echo(f"  model {model.hash[:12]}, {header.order} order, "
                   f"{time.perf_counter() - started:.1f} s", err=to_stdout)


def selected_names(parsed, selection: dict, where: str) -> list[str]:
    """The names of the images a decompress with this selection writes."""
    from . import sharding
    chosen = sharding.selection(parsed, where, **selection)
    return parsed.names if chosen is None else [parsed.names[i] for i in chosen]


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (the raw header).")
@friendly_errors
def info(archive, as_json):
    """Show what an archive holds and what each part costs, without decoding it."""
    with open(archive, "rb") as f:
        blob = f.read()
    from .archive import describe
    described = describe(blob, where=archive)
    if as_json:
        click.echo(json.dumps(described, indent=2, ensure_ascii=False))
        return
    h = described["header"]
    spec = h.get("spec", {})
    dims = h["n"] * spec.get("height", 0) * spec.get("width", 0) * spec.get("channels", 0)
    rate = f", {8 * described['bytes'] / dims:.4f} bits/dim" if dims else ""
    kind = "a folder of image files" if described["kind"] == "folder" else "an array"
    click.echo(f"{archive}: {described['bytes']:,} bytes{rate}")
    click.echo(f"  holds {plural(h['n'], 'image')} of {spec.get('height')}x{spec.get('width')}x"
               f"{spec.get('channels')}, {spec.get('levels')} levels, from {kind}")
    order = ("tour (decompress returns the images in tour order" + (", with their names)" if described["kind"] ==
             "folder" else ", not their original order)")) if h.get("order") == "tour" else h.get("order")
    click.echo(f"  order: {order}")
    if "shards" in described:
        sizes = [s["images"] for s in described["shards"]]
        click.echo(f"  {plural(len(sizes), 'shard')} of {min(sizes):,} to {max(sizes):,} images, each decodable "
                   "on its own (decompress --shard K)")
    from . import registry
    entry = registry.by_hash(h.get("model_hash", ""))
    click.echo(f"  model: {h.get('model_hash', '?')[:12]} "
               + (f"(shipped {entry.name})" if entry else "(not shipped: decompress needs --model FILE)"))
    click.echo("  sections: " + ", ".join(f"{k} {v:,} bytes" for k, v in described["section_bytes"].items()))
    versions = h.get("versions", {})
    if versions:
        click.echo("  written with " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))


@main.command()
@click.argument("data")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--binarize", is_flag=True, help="Binarize 8-bit data (fixed-seed stochastic) first.")
@friendly_errors
def export(data, folder, binarize):
    """Write DATA as a folder of PNG files (the inverse of reading a folder)."""
    from . import data as datamod
    images = load_data(data, binarize=binarize)
    names = datamod.export_png(images, folder, names=images.names)
    click.echo(f"wrote {len(names)} PNG files to {folder}")


@main.command()
@click.argument("expected")
@click.argument("actual")
@click.option("--by", "mode", type=click.Choice(("auto", "name", "order", "set")), default="auto",
              show_default=True,
              help="How images are paired: name (two folders), order (arrays), set (the same images in any "
                   "order, as an array archive in tour order returns them); auto: by name for two folders, "
                   "else in order, and as a set when only the order differs (said in the result).")
@click.option("--levels", type=click.IntRange(2, 256), default=None,
              help="Levels of both datasets (default: EXPECTED's, for ACTUAL too where its values fit them, as "
                   "decompress's array of 17-level digits does).")
@friendly_errors
def compare(expected, actual, mode, levels):
    """Check that two datasets hold the same images, every pixel; says how they were paired."""
    from .compare import compare_images
    expected_set = load_data(expected, levels=levels)
    try:   # an array of level indices says nothing of its levels: read it as EXPECTED's
        actual_set = load_data(actual, levels=expected_set.levels if levels is None else levels)
    except AcnError:
        if levels is not None:
            raise
        actual_set = load_data(actual)   # then the spec check below says what differs
    result = compare_images(expected_set, actual_set, mode)
    click.echo(result.describe())


ESTIMATE_ROWS = [("kl_k1", "KL(K=1)"), ("kl_k5", "KL(K=5)"), ("kl_tour", "KL(tour: greedy + 2-opt)"),
                 ("kl_k10", "KL(K=10)"), ("kl_unconditional", "KL(unconditional)"),
                 ("reconstruction", "reconstruction"), ("ordered", "ordered <="), ("unordered", "unordered"),
                 ("set", "set (order refunded)"), ("order_cost", "ln(N!)/N (order)")]


@main.command()
@click.argument("data")
@click.option("--model", "-m", "model_path", default=None,
              help="Model file or shipped model's name (default: the shipped model that fits the data).")
@click.option("--levels", type=click.IntRange(2, 256), default=None,
              help="Levels of the data, for arrays whose values alone do not say (as for compress).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@friendly_errors
def estimate(data, model_path, levels, as_json, quiet):
    """The paper's Table 2 for DATA: KLs, reconstruction, ordered and unordered cost (nats/image, bits/dim)."""
    from . import api
    images, model = data_and_model(data, model_path, levels, functools.partial(click.echo, err=True))
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
    """List the reference models shipped with acncodec (usable by name wherever a model is asked for), then
    the superseded ones, kept to decode the archives made with them."""
    from . import registry
    entries = registry.all_shipped()
    if as_json:
        click.echo(json.dumps([{**e.to_dict(), "path": str(e.path)} for e in entries], indent=2))
        return
    if not entries:
        click.echo("no shipped models in this installation")
    for e in sorted(entries, key=lambda e: e.superseded_by is not None):
        size = e.path.stat().st_size / 1e6 if e.path.exists() else float("nan")
        click.echo(f"{e.name:22} {str(e.spec):24} hash {e.hash[:12]}  {size:.1f} MB  {e.description}")
        if e.superseded_by:
            click.echo(f"{'':22} superseded by {e.superseded_by}; never picked for new data")
        else:
            click.echo(f"{'':22} trained on {e.trained_on}: {e.command}")


@main.command(name="model-info")
@click.argument("model")
@friendly_errors
def model_info(model):
    """Show a model file's data spec, configuration, hash and training record."""
    from . import registry
    m = registry.load_model(model)
    click.echo(json.dumps({"hash": m.hash, "spec": m.spec.to_dict(), "config": m.config.to_dict(),
                           "unconditional_components": m.unconditional.components,
                           "unconditional_covariance": "full" if m.unconditional.full else "diag",
                           "meta": m.meta}, indent=2))


def use_coding_threads() -> None:
    import torch
    from .codec import CODING_THREADS
    torch.set_num_threads(CODING_THREADS)


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
    use_coding_threads()
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
    use_coding_threads()
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
@click.option("--steps", type=click.IntRange(min=1), default=16, show_default=True,
              help="Daydream steps per chain.")
@click.option("--rows", type=click.IntRange(min=1), default=4, show_default=True, help="Chains.")
@_represent_options
@friendly_errors
def daydream_command(model, data, start, steps, rows, output, seed, scale, force):
    from . import represent
    check_writable(output, force)
    use_coding_threads()
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
@click.option("-k", "k", type=click.IntRange(min=1), default=8, show_default=True,
              help="Neighbours shown per query and space.")
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
    use_coding_threads()
    m, images = represent.load_matched(model, data)
    found = represent.neighbours(m, images, chosen, k)
    x = images.images
    rows = []
    for n, q in enumerate(chosen):
        rows += [x[[q, *found["code"][n]]], x[[q, *found["pixel"][n]]]]
    labels = [f"image {q}, {space}" for q in chosen for space in ("by code", "by pixels")]
    grid = represent.grid_png(rows, m.spec.levels, output, scale=scale, force=force, row_labels=labels,
                              header=f"each row: the query image, then its {k} nearest other images of {data}")
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
@click.option("--pca-components", type=click.IntRange(min=1), default=16, show_default=True,
              help="PCA components of the pixels for the third probe.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the probes' solvers.")
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
    use_coding_threads()
    m, train_images = represent.load_matched(model, train_data)
    from . import codec
    test_images = codec.match_model(load_data(test_data), m)
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
        from .fileio import atomic_write_bytes
        record = {"model_hash": m.hash, "train_data": train_data, "test_data": test_data, **result}
        atomic_write_bytes(json_out, (json.dumps(record, indent=2) + "\n").encode())
# ======================================================================================================= END



if __name__ == "__main__":
    main()
