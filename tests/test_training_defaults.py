"""Training a model of your own (issue 14, point 2): a length that fits a time budget, said before the run;
a KL warm-up that ends within the run; checkpoints on interrupt and by time; the checkpoint cleaned up."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from acncodec.config import TrainConfig
from acncodec.data import load
from acncodec.train import Trainer, TrainingInterrupted, checkpoint_path
from helpers import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits200():
    return load("digits:200")


def test_warmup_is_a_fraction_of_any_run_length():
    # The case: 520 images, 163 steps; a fixed 2,000-step warm-up never passed 8%.
    for steps in (163, 1000, 20000):
        warmup = TrainConfig(steps=steps).warmup_steps(steps)
        assert 0 < warmup < steps
    assert TrainConfig(kl_warmup=7).warmup_steps(1000) == 7


def test_short_run_reaches_the_full_kl_weight(tmp_path, digits200):
    trainer = Trainer(digits200, tmp_path / "m.acn", TINY, TrainConfig(steps=12, batch_size=16, threads=1))
    weights = []
    while trainer.step < 12:
        weights.append(trainer.kl_weight())
        trainer.train_step()
    assert weights[0] < 0.5 and weights[-1] == 1.0


def test_default_length_fits_the_time_budget_and_is_announced_before_the_run_goes_on(tmp_path, digits200):
    config = TrainConfig(minutes=2 / 60, batch_size=16, threads=1, max_epochs=1000)
    seen = []
    trainer = Trainer(digits200, tmp_path / "m.acn", TINY, config)
    started = time.perf_counter()
    model = trainer.run(progress=False, on_plan=lambda t: seen.append((t.step, t.total_steps, t.seconds_per_step)))
    seconds = time.perf_counter() - started
    assert len(seen) == 1
    step, planned, rate = seen[0]
    assert step <= Trainer.PROBE_STEPS < planned == config.budget_steps(len(digits200), rate)
    assert model.meta["steps"] == trainer.step <= planned          # fewer when the budget ran out first
    assert model.meta["stopped_at_time_budget"] == (trainer.step < planned)
    assert model.meta["train_config"]["kl_warmup"] == round(0.25 * planned)   # as planned, not as cut short
    assert model.meta["train_seconds"] < 60 * config.minutes + 10 * rate
    assert seconds < 60 * config.minutes + 60   # then the codes are refreshed and p(z) is fitted


def test_the_time_budget_ends_a_run_that_runs_slower_than_planned(tmp_path, digits200, monkeypatch):
    config = TrainConfig(minutes=1.5 / 60, batch_size=16, threads=1, max_epochs=1000)
    trainer = Trainer(digits200, tmp_path / "m.acn", TINY, config)
    step = trainer.train_step

    def slower_after_the_plan():
        if trainer.seconds_per_step is not None:
            time.sleep(0.05)   # the cores get busy once the length is fixed
        return step()

    monkeypatch.setattr(trainer, "train_step", slower_after_the_plan)
    model = trainer.run(progress=False)
    assert model.meta["stopped_at_time_budget"] and trainer.step < trainer.config.budget_steps(
        len(digits200), trainer.seconds_per_step)
    assert model.meta["train_seconds"] < 60 * config.minutes + 1


def test_budget_is_capped_by_epochs():
    config = TrainConfig(minutes=60, batch_size=64, max_epochs=10)
    assert config.budget_steps(640, 0.01) == 100          # 10 passes, not 360,000 steps
    assert config.budget_steps(640_000, 1.0) == 3600      # an hour of steps


def test_interrupt_writes_a_checkpoint_and_the_resumed_run_is_exact(tmp_path, digits200, monkeypatch):
    config = TrainConfig(steps=10, batch_size=16, threads=1, checkpoint_every=1000, log_every=1000)
    whole = Trainer(digits200, tmp_path / "a" / "m.acn", TINY, config)
    while whole.step < 10:
        whole.train_step()

    stopped = Trainer(digits200, tmp_path / "b" / "m.acn", TINY, config)
    step = stopped.train_step

    def step_then_ctrl_c():
        out = step()
        if stopped.step == 4:
            os.kill(os.getpid(), signal.SIGINT)   # arrives mid-run; the step in progress completes
        return out

    monkeypatch.setattr(stopped, "train_step", step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)   # the default, or SIG_IGN when the suite runs as a background job
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 4 of 10; the checkpoint .*m.acn.ckpt"):
        stopped.run(progress=False)
    assert checkpoint_path(tmp_path / "b" / "m.acn").is_file()
    assert signal.getsignal(signal.SIGINT) is before   # handlers are given back

    resumed = Trainer(digits200, tmp_path / "b" / "m.acn", TINY, config)
    assert resumed.step == 4
    while resumed.step < 10:
        resumed.train_step()
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(whole.memory.codes, resumed.memory.codes)


def test_checkpoints_come_by_time_and_are_removed_when_the_model_is_written(tmp_path, digits200, monkeypatch):
    saves = []
    for minutes in (1e-9, 60.0):
        config = TrainConfig(steps=5, batch_size=16, threads=1, checkpoint_every=1000, checkpoint_minutes=minutes)
        trainer = Trainer(digits200, tmp_path / f"{minutes}" / "m.acn", TINY, config)
        original = trainer.save_checkpoint
        count = []
        monkeypatch.setattr(trainer, "save_checkpoint", lambda: (count.append(1), original())[1])
        trainer.run(progress=False)
        saves.append(len(count))
        assert (tmp_path / f"{minutes}" / "m.acn").is_file()
        assert not checkpoint_path(tmp_path / f"{minutes}" / "m.acn").exists()
    assert saves[0] >= 5 and saves[1] == 1   # every step when the interval is tiny; else only before the fit


def test_cli_sigterm_keeps_the_run_and_the_same_command_continues(tmp_path):
    out = tmp_path / "m.acn"
    command = [sys.executable, "-m", "acncodec.cli", "train", "digits:200", "-o", str(out), "--steps", "100000",
               "--threads", "1", "--decoder-channels", "8", "--decoder-layers", "2", "--latent-dim", "3",
               "--prior-hidden", "16", "--encoder-hidden", "16", "--encoder-channels", "4", "--batch-size", "16"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("plan:"):
            break
    assert "100,000 steps" in lines[-1] and "about" in lines[-1] and "to go" in lines[-1], lines
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(60) == 130, rest
    assert "interrupted at step" in rest and "run the same command again to continue" in rest
    assert "Traceback" not in rest and checkpoint_path(out).is_file() and not out.exists()
    done = subprocess.run(command[:8] + ["1"] + command[9:], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr and out.is_file() and not checkpoint_path(out).exists()
