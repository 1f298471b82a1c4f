"""Training the ACN (paper, Algorithm 1), resumable, followed by the unconditional prior fit.

Per step: encode a batch, write its codes into the code memory, find each code's K nearest neighbours in the
memory excluding the datum itself, pick ĉ uniformly among them (or the first unused one in unique mode), and
minimise KL(q(z|x) || p(z|ĉ)) - log r(x|z) in nats. Adam and an exponential moving average of the weights
replace the paper's rmsprop (lr 1e-5) and Polyak averaging (decay 0.9999): on two CPU cores the paper's
settings would need far more steps than a run can afford. The averaged weights are saved and used for
evaluation and coding.
"""

from __future__ import annotations

import copy
import io
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import modelfile
from .config import DEVICES, ModelConfig, TrainConfig, epochs_to_steps  # noqa: F401  (re-exported)
from .data import ImageSet
from .errors import AcnError
from .evaluate import encode_all
from .progress import bar as progress_bar
from .fileio import atomic_write_bytes
from . import knn
from .knn import UniqueNeighbours, pick_uniform
from .unconditional import fit_unconditional


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def log_path(output: Path) -> Path:
    return output.with_name(output.name + ".log.jsonl")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) uint8, kept compact; batches are widened on use."""
    return torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), order="C", copy=True))


def kl_weight(step: int, warmup: int) -> float:
    """KL weight rising linearly from 0 to 1 over the first `warmup` steps.

    With the full KL from the first step the encoder's still-random codes are penalised before the decoder
    has learned to read them, and the latent collapses (measured: KL below 0.3 nats/image on binarized MNIST
    after 200 steps). Warm-up lets the decoder learn to use z first; afterwards the loss is the true one.
    """
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


def learning_rate_at(step: int, total: int | None, base: float, schedule: str) -> float:
    """The learning rate of step `step` (counted from 0) of a run of `total` steps.

    cosine: base (1 + cos(pi step / total)) / 2, from base at the first step towards 0 at the last. Annealing
    lets the weights settle into the minimum that a constant rate keeps stepping around. Before a
    time-budgeted run's length is known (its first few steps) the rate is base.
    """
    if schedule == "constant" or total is None or total <= 0:
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def ema_decay_at(step: int, decay: float) -> float:
    """Warm-up so early averages are not dominated by the random initialisation."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.mul_(decay).add_(p, alpha=1 - decay)


def resolve_device(name: str) -> torch.device:
    """The device to train on: `auto` picks CUDA, then Apple's MPS, then the CPU; one asked for by name must
    be there. Coding always runs on the CPU (exact integer numerics make any machine decode any archive)."""
    if name not in DEVICES:
        raise AcnError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    elif (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise AcnError(f"--device {name}: this torch ({torch.__version__}) sees no {name.upper()} device; "
                       f"use --device cpu or auto")
    return torch.device(name)


def cut_inputs(net: torch.nn.Module, variant: str) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """The weights a variant holds at zero, with masks (1 where a weight is free).

    `pixelvae` cuts the neighbour's code out of the prior network: every weight that reads it (the code enters
    each hidden layer and the output through skips) is zero, so the network is a constant, one learned mixture
    for all data, the Gated PixelVAE's prior. `pixelcnn` cuts z out of the decoder (its conditioning map's first
    layer), a Gated PixelCNN alone; the KL term then only teaches the encoder to put its codes where the prior
    is, so the latent costs almost nothing. The zeros are exact, so the quantised networks ignore the cut
    input too.
    """
    if variant == "acn":
        return []
    if variant == "pixelvae":
        prior, d = net.prior, net.config.latent_dim
        cuts = [(prior.h1.weight, slice(None)), (prior.h2.weight, slice(-d, None)),
                (prior.h3.weight, slice(-d, None)), (prior.out.weight, slice(0, d))]
    elif variant == "pixelcnn":
        cuts = [(net.decoder.condition_map.fc.weight, slice(None))]
    else:
        raise AcnError(f"unknown variant {variant!r}")
    out = []
    for weight, columns in cuts:
        mask = torch.ones_like(weight)
        mask[:, columns] = 0
        out.append((weight, mask))
    return out


def hold_cuts(cuts: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
    """Zero the cut weights and their gradients from now on (Adam then never moves them: its moments of a
    gradient that is always zero stay zero)."""
    with torch.no_grad():
        for weight, mask in cuts:
            weight.mul_(mask)
            weight.register_hook(lambda g, mask=mask: g * mask)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a training run after its checkpoint was written; the message says where."""


@contextmanager
def deferred_interrupts():
    """Ctrl-C and SIGTERM set a flag instead of raising in the middle of a step, so that the checkpoint written
    on the way out holds a consistent state. A second signal stops at once (the last checkpoint remains)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():   # signal handlers live in the main thread
        yield caught
        return

    def handler(signum, frame):
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def check_init(init: modelfile.Model, spec, model_config: ModelConfig, variant: str) -> list[str]:
    """Why `init` cannot start a run on data of `spec` with these networks (empty if it can)."""
    problems = []
    if init.spec != spec:
        problems.append(f"it is for {init.spec}, the data is {spec}")
    if init.config != model_config:
        diff = [f"{k} {v} (the run asks {getattr(model_config, k)})" for k, v in init.config.to_dict().items()
                if getattr(model_config, k) != v]
        problems.append("its networks differ: " + ", ".join(diff))
    if init.meta.get("variant", "acn") != variant:
        problems.append(f"it is a {init.meta.get('variant', 'acn')} model, the run trains {variant}")
    return problems


class Trainer:
    """Holds the state of one training run; `run()` trains and writes the model file.

    The run's length is fixed once, by `plan()` after the first few steps have been timed (see TrainConfig),
    and kept in the checkpoint so a resumed run ends where the first one meant to.
    """

    PROBE_STEPS = 4   # timed before the length is fixed; the first includes one-off start-up costs

    def __init__(self, data: ImageSet, output: str | Path, model_config: ModelConfig = ModelConfig(),
                 config: TrainConfig = TrainConfig(), resume: bool = True, meta: dict | None = None,
                 keep_checkpoint: bool = False, init: modelfile.Model | None = None):
        if len(data) <= config.neighbours:
            raise AcnError(f"{data.source}: {len(data)} images is too few to train with "
                           f"{config.neighbours} neighbours")
        self.data, self.config, self.model_config = data, config, model_config
        self.output = Path(output)
        self.meta = dict(meta or {})
        self.keep_checkpoint = keep_checkpoint
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.device = resolve_device(config.device)
        self.images = to_tensor(data.images)       # on the CPU; each batch is moved to the device
        self.net = modelfile.build(data.spec, model_config).to(self.device)
        hold_cuts(cut_inputs(self.net, config.variant))
        self.ema = copy.deepcopy(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate)
        self.rng = np.random.default_rng(config.seed)
        self.memory = knn.code_memory(len(data), model_config.latent_dim, self.rng, self.device)
        self.unique = UniqueNeighbours(len(data)) if config.unique_neighbours else None
        self.step = 0
        self.elapsed = 0.0
        self.total_steps: int | None = config.steps   # None until plan() has timed the first steps
        self.warmup_steps: int | None = (config.warmup_steps(config.steps) if config.steps is not None
                                         else config.kl_warmup)
        self.out_of_time = False   # a time-budgeted run that ended at its budget before its planned steps
        self.seconds_per_step: float | None = None
        self.last_loss: float | None = None   # nats/image, mean over the last logged steps
        self.order = self.rng.permutation(len(data))
        self.cursor = 0
        self.init_hash = None if init is None else init.hash
        if resume and checkpoint_path(self.output).exists():
            self._load_checkpoint()
        elif init is not None:
            self._start_from(init)
        if init is not None:   # also when resumed: the checkpoint's identity holds the same model's hash
            self.meta["initialised_from"] = {"hash": init.hash, "steps": init.meta.get("steps"),
                                             "train_seconds": init.meta.get("train_seconds"),
                                             "command": init.meta.get("command"),
                                             "initialised_from": init.meta.get("initialised_from")}

    def _start_from(self, init: modelfile.Model) -> None:
        """Start from a trained model's networks (an exact model's: the float network its integer maps stand
        for) instead of random weights. The code memory is filled with its codes of every datum, so the first
        neighbours are real ones; Adam's moments start afresh."""
        problems = check_init(init, self.data.spec, self.model_config, self.config.variant)
        if problems:
            raise AcnError(f"--init {init.hash[:12]}: " + "; ".join(problems))
        self.net.load_state_dict(init.net.state_dict())
        self.ema.load_state_dict(init.net.state_dict())
        self.memory.write(np.arange(len(self.data)), encode_all(init.net, self.images).numpy())

    # -- checkpoints -------------------------------------------------------------------------------
    def _identity(self) -> dict:
        identity = {"spec": self.data.spec.to_dict(), "model_config": self.model_config.to_dict(),
                    "n": len(self.data)}
        if self.config.variant != "acn":   # an ACN's identity stays what it was before variants existed
            identity["variant"] = self.config.variant
        if self.init_hash is not None:
            identity["init"] = self.init_hash
        return identity

    def save_checkpoint(self) -> Path:
        state = {"identity": json.dumps(self._identity(), sort_keys=True), "step": self.step,
                 "elapsed": self.elapsed, "net": self.net.state_dict(), "ema": self.ema.state_dict(),
                 "opt": self.opt.state_dict(), "memory": torch.from_numpy(self.memory.codes),
                 "order": torch.from_numpy(self.order), "cursor": self.cursor,
                 "rng": json.dumps(self.rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                 "used": torch.from_numpy(self.unique.used) if self.unique else None,
                 "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}
        buf = io.BytesIO()
        torch.save(state, buf)
        path = checkpoint_path(self.output)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def _load_checkpoint(self) -> None:
        path = checkpoint_path(self.output)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["identity"] != json.dumps(self._identity(), sort_keys=True):
            raise AcnError(f"{path}: checkpoint is for other data or another model configuration "
                           "(delete it or choose another output)")
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.memory.codes = state["memory"].numpy().copy()
        self.order, self.cursor = state["order"].numpy().copy(), state["cursor"]
        self.rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.unique is not None and state["used"] is not None:
            self.unique.used = state["used"].numpy().copy()
        if self.config.steps is None:   # a length chosen by time is kept; one given now replaces it
            self.total_steps = state.get("total_steps")
            self.warmup_steps = state.get("warmup_steps", self.warmup_steps)

    # -- training ------------------------------------------------------------------------------------
    def next_batch(self) -> np.ndarray:
        if self.cursor + self.config.batch_size > len(self.order):
            self.order = self.rng.permutation(len(self.data))
            self.cursor = 0
            if self.unique is not None:
                self.unique.new_pass()
        ids = self.order[self.cursor:self.cursor + self.config.batch_size]
        self.cursor += len(ids)
        return ids

    def kl_weight(self) -> float:
        """Before a time-budgeted run's length is known (its first few steps) the warm-up is not known either;
        those steps use the KL weight 0, which any warm-up of more than a few steps would round to anyway."""
        return 0.0 if self.warmup_steps is None else kl_weight(self.step, self.warmup_steps)

    def train_step(self) -> dict:
        ids = self.next_batch()
        x = self.images[ids].to(self.device).long()
        codes = self.net.encoder(x)
        self.memory.write(ids, codes.detach())
        pool = knn.draw_pool(len(self.data), self.config.neighbour_pool, self.rng)
        candidates = self.memory.neighbours(ids, self.config.neighbours, pool)
        chosen = (self.unique.pick(candidates, self.rng) if self.unique is not None
                  else pick_uniform(candidates, self.rng))
        neighbour_codes = self.memory.read(chosen, self.device)
        kl, reconstruction = self.net.loss_terms(x, codes, neighbour_codes)
        loss = (self.kl_weight() * kl + reconstruction).mean()
        lr = learning_rate_at(self.step, self.total_steps, self.config.learning_rate, self.config.lr_schedule)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        update_ema(self.ema, self.net, ema_decay_at(self.step, self.config.ema_decay))
        self.step += 1
        kl, reconstruction = kl.mean().item(), reconstruction.mean().item()
        return {"loss": kl + reconstruction, "kl": kl, "recon": reconstruction}

    def plan(self, seconds_per_step: float) -> int:
        """Fix the run's length from the measured speed (unless it was given or resumed) and return it."""
        self.seconds_per_step = seconds_per_step
        if self.total_steps is None:
            self.total_steps = max(self.step, self.config.budget_steps(len(self.data), seconds_per_step))
        if self.warmup_steps is None:
            self.warmup_steps = self.config.warmup_steps(self.total_steps)
        return self.total_steps

    def run(self, progress: bool = True, on_plan=None) -> modelfile.Model:
        """Train to the planned length and write the model file. `on_plan(trainer)` is called once the length
        and the speed are known, after the first few steps, so a caller can say how long the run will take.
        Ctrl-C or SIGTERM writes a checkpoint and raises TrainingInterrupted; rerunning resumes from it."""
        cfg = self.config
        self.net.train()
        bar = progress_bar(total=self.total_steps, progress=progress, initial=self.step, unit="step",
                           dynamic_ncols=True)
        window: list[dict] = []
        started = time.perf_counter() - self.elapsed
        last_checkpoint = time.perf_counter()
        probe_from, probe_started = None, None
        # A length set by the time budget is an estimate from the first steps; on shared cores the speed
        # changes, so the budget itself also ends the run (the warm-up stays as planned).
        budget = 60 * cfg.minutes if cfg.steps is None else None
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path(self.output), "a") as log, deferred_interrupts() as caught:
            while self.total_steps is None or self.step < self.total_steps:
                t0 = time.perf_counter()
                window.append(self.train_step())
                now = time.perf_counter()
                self.elapsed = now - started
                if probe_started is None:   # the first step pays one-off costs: time the ones after it
                    probe_from, probe_started = self.step, now
                elif self.seconds_per_step is None and (self.step - probe_from >= self.PROBE_STEPS - 1
                                                        or self.step == self.total_steps):
                    self.plan((now - probe_started) / (self.step - probe_from))
                    bar.total = self.total_steps
                    bar.refresh()
                    if on_plan is not None:
                        on_plan(self)
                rate = cfg.batch_size / max(now - t0, 1e-9)
                bar.update(1)
                if budget is not None and self.total_steps is not None and self.step < self.total_steps \
                        and self.elapsed >= budget:
                    self.total_steps, self.out_of_time = self.step, True
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    avg = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    window.clear()
                    self.last_loss = avg["loss"]
                    bar.set_postfix(loss=f"{avg['loss']:.2f}", kl=f"{avg['kl']:.2f}",
                                    recon=f"{avg['recon']:.2f}", img_s=f"{rate:.0f}")
                    log.write(json.dumps({"step": self.step, "elapsed_s": round(self.elapsed, 2), **avg}) + "\n")
                    log.flush()
                if caught:
                    bar.close()
                    path = self.save_checkpoint()
                    of = f" of {self.total_steps}" if self.total_steps else ""
                    raise TrainingInterrupted(f"interrupted at step {self.step}{of}; the checkpoint {path} holds "
                                              "the run so far: run the same command again to continue")
                if self.step % cfg.checkpoint_every == 0 or now - last_checkpoint >= 60 * cfg.checkpoint_minutes:
                    self.save_checkpoint()
                    last_checkpoint = time.perf_counter()
        bar.close()
        self.save_checkpoint()   # the model fit below takes a while; an interruption there loses no steps
        model = self.finish(progress)
        if not self.keep_checkpoint:
            checkpoint_path(self.output).unlink(missing_ok=True)
        return model

    def finish(self, progress: bool = True) -> modelfile.Model:
        """Refresh every code with the averaged weights, fit p(z), and write the model file."""
        self.ema.eval()
        self.ema.to("cpu")   # the model file (and all coding) is on the CPU
        codes = encode_all(self.ema, self.images, progress=progress)
        prior, selection = fit_unconditional(codes.numpy(), seed=self.config.seed)
        train_config = {**asdict(self.config), "steps": self.total_steps, "kl_warmup": self.warmup_steps}
        meta = {**self.meta, "train_config": train_config, "steps": self.step,
                "train_seconds": round(self.elapsed, 1), "train_images": len(self.data),
                "train_source": self.data.source, "unconditional_selection": selection,
                "stopped_at_time_budget": self.out_of_time, "variant": self.config.variant,
                "epochs": round(self.step * self.config.batch_size / len(self.data), 2)}
        model = modelfile.with_buckets(modelfile.Model(self.ema, self.data.spec, prior, None, meta),
                                       self.config.bucket_bits)
        modelfile.save(model, self.output)
        return model


def refit_unconditional(model: modelfile.Model, data: ImageSet, covariance: str, seed: int = 0,
                        progress: bool = False):
    """p(z) fitted afresh, with `covariance` ("diag" or "full"), to the model's codes of `data` (its training
    images): the prior and the record of its selection. A full one is coded by the exact numerics only, so it
    goes into `quantize.quantise_model`."""
    codes = encode_all(model.net, to_tensor(data.images), progress=progress)
    return fit_unconditional(codes.numpy(), seed=seed, covariance=covariance)


def refit_prior_to_tours(model: modelfile.Model, data: ImageSet, set_size: int, steps: int, seed: int = 0,
                         progress: bool = False) -> modelfile.Model:
    """The float model with its conditional prior fitted to the steps of tours through sets of `set_size` of
    its codes of `data` (`tour_prior.fit_prior_to_tours`); the fit's record is in meta["tour_prior"]. Done
    before quantising: an exact model's integer maps are the quantised prior."""
    from .tour_prior import fit_prior_to_tours
    if model.numerics != "float32":
        raise AcnError("fit the prior to tours before quantising: this model is already exact")
    codes = encode_all(model.net, to_tensor(data.images), progress=progress)
    prior, record = fit_prior_to_tours(model.net.prior, codes, set_size, steps, seed=seed, progress=progress)
    net = copy.deepcopy(model.net)
    net.prior = prior
    return modelfile.Model(net, model.spec, model.unconditional, model.buckets,
                           dict(model.meta, tour_prior=record), model.head)


def train(data: ImageSet, output: str | Path, model_config: ModelConfig = ModelConfig(),
          config: TrainConfig = TrainConfig(), resume: bool = True, progress: bool = True,
          meta: dict | None = None, keep_checkpoint: bool = False, on_plan=None,
          init: modelfile.Model | None = None) -> modelfile.Model:
    """Train an ACN on `data` and write the model file to `output` (resuming from its checkpoint if any).
    The checkpoint is removed once the model file is written, unless `keep_checkpoint`. `init`: a model of the
    same data spec, networks and variant to start from instead of random weights."""
    return Trainer(data, output, model_config, config, resume, meta, keep_checkpoint, init).run(progress, on_plan)
