"""Shipped reference models: the index agrees with the files, and the command line finds them without --model."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acncodec import modelfile, registry
from acncodec.cli import main
from acncodec.data import DataSpec, ImageSet, export_png, level_grid, load
from acncodec.errors import AcnError
from acncodec.evaluate import unordered_cost
from helpers import tiny_model

SHIPPED = registry.shipped()
ALL_SHIPPED = registry.all_shipped()


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- the real shipped models --------------------------------------------------------------------------

def test_the_four_reference_models_are_shipped():
    assert {m.name for m in SHIPPED} == {"digits", "binarized-mnist", "mnist", "fashion-mnist"}
    # the exact1 models the exact2 ones superseded stay, found by name and by hash, never picked for new data
    old = {m.name: m for m in ALL_SHIPPED if m.superseded_by}
    assert set(old) == {"binarized-mnist-exact1", "fashion-mnist-exact1"}
    for m in old.values():
        assert registry.by_hash(m.hash) == m == registry.by_name(m.name)
        assert registry.by_name(m.superseded_by).spec == m.spec


@pytest.mark.parametrize("entry", ALL_SHIPPED, ids=lambda m: m.name)
def test_shipped_model_matches_its_index_entry(entry):
    assert entry.path.stat().st_size <= 10_000_000   # bench/ship_models.py MAX_BYTES
    model = entry.load()
    assert model.hash == entry.hash and model.spec == entry.spec
    assert entry.command.startswith("acncodec train ")
    # shipped exact (archives decode on any machine), with the recipe: training, then quantisation (a separate
    # command for models trained before `train` quantised its output itself)
    assert model.numerics in ("exact1", "exact2") and not model.has_weights
    assert (model.numerics == "exact2") == (entry.name in ("binarized-mnist", "fashion-mnist"))
    recipe = model.meta["command"]
    if "quantize_command" in model.meta:
        recipe += f"; {model.meta['quantize_command']}"
    else:
        assert "quantised_from" in model.meta
    if model.numerics == "exact2":      # requantised from the exact1 model it superseded
        assert model.meta["requantised_from"] == registry.by_name(f"{entry.name}-exact1").hash
        recipe += f"; {model.meta['requantize_command']}"
    start = model.meta.get("initialised_from")
    while start:   # trained further from another model: the index names it (and its own start, and so on)
        recipe += f" (--init: model {start['hash'][:12]}, made by: {start.get('command')})"
        start = start.get("initialised_from")
    assert entry.command == recipe


def test_shipped_models_fit_the_size_budget():
    assert sum(m.path.stat().st_size for m in ALL_SHIPPED) <= 20_000_000


def test_a_damaged_shipped_model_is_refused(tmp_path, monkeypatch):
    entry = SHIPPED[0]
    (tmp_path / entry.file).write_bytes(entry.path.read_bytes()[:-100])
    (tmp_path / registry.INDEX).write_text(json.dumps({"models": [entry.to_dict()]}))
    monkeypatch.setattr(registry, "REFERENCE_DIR", tmp_path)
    with pytest.raises(AcnError):
        registry.by_name(entry.name).load()


def test_pick_prefers_the_model_with_the_fewest_levels_that_fits():
    rng = np.random.default_rng(0)
    binary = ImageSet(rng.integers(0, 2, (3, 28, 28, 1), dtype=np.uint8), 2, None, "binary")
    as_png = ImageSet(binary.images * np.uint8(255), 256, None, "binary as 8-bit")
    grey = ImageSet(rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8), 256, None, "grey")
    assert registry.pick_for(binary).name == "binarized-mnist"
    assert registry.pick_for(as_png).name == "binarized-mnist"
    assert registry.pick_for(load("digits:5")).name == "digits"
    # two 28x28 8-bit models: both are candidates, and the one that codes these images best is picked
    assert [m.name for m in registry.candidates_for(grey)] == ["mnist", "fashion-mnist"]
    entry, costs = registry.choose_for(grey)
    assert costs[entry.name] == min(costs.values()) and set(costs) == {"mnist", "fashion-mnist"}


def available(source: str) -> bool:
    try:
        load(source)
        return True
    except AcnError:
        return False


@pytest.mark.skipif(not (available("mnist:test:1") and available("fashion-mnist:test:1")),
                    reason="needs MNIST and Fashion-MNIST")
def test_grey_mnist_and_fashion_mnist_each_get_their_own_model():
    for source, want, other in (("mnist:test:64", "mnist", "fashion-mnist"),
                                ("fashion-mnist:test:64", "fashion-mnist", "mnist")):
        entry, costs = registry.choose_for(load(source))
        assert entry.name == want and costs[want] < 0.9 * costs[other], costs


def leaning_model(spec: DataSpec, level: int) -> modelfile.Model:
    """A tiny model whose pixel distribution puts almost all its mass on one level, whatever z is."""
    model = tiny_model(spec)
    logits = model.net.decoder.head.logits
    with torch.no_grad():
        logits.weight.zero_()
        logits.bias.fill_(-8.0)
        logits.bias[level] = 8.0
    return model


def test_of_two_models_for_the_same_spec_the_one_that_codes_a_sample_best_is_picked(tmp_path, monkeypatch):
    spec = DataSpec(4, 5, 1, 256)
    entries = []
    for name, level in (("dark", 0), ("bright", 255)):
        digest = modelfile.save(leaning_model(spec, level), tmp_path / f"{name}.acn")
        entries.append(registry.ShippedModel(name, f"{name}.acn", digest, spec, "-", "-", "-").to_dict())
    (tmp_path / registry.INDEX).write_text(json.dumps({"models": entries}))
    monkeypatch.setattr(registry, "REFERENCE_DIR", tmp_path)
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 3, (200, 4, 5, 1)).astype(np.uint8)
    dark[::7] = 255                        # a few images of the other kind do not sway the choice
    for images, want, other in ((dark, "dark", "bright"), (255 - dark, "bright", "dark")):
        entry, costs = registry.choose_for(ImageSet(images, 256, None, want))
        assert entry.name == want and costs[want] < costs[other]
        # scored on an even spread of SAMPLE_IMAGES of the 200 images, as the evaluation itself computes it
        sample = registry.sample_of(len(images))
        assert len(sample) == registry.SAMPLE_IMAGES and sample[0] == 0 and sample[-1] == 199
        model = registry.by_name(want).load()
        x = torch.from_numpy(images[sample].transpose(0, 3, 1, 2).copy())
        assert costs[want] == pytest.approx(float(unordered_cost(model.net, model.unconditional, x).mean()))


def test_a_single_fitting_model_is_taken_without_scoring():
    entry, costs = registry.choose_for(load("digits:5"))
    assert entry.name == "digits" and costs == {}


def test_no_fitting_model_says_how_to_train_one():
    odd = ImageSet(np.zeros((2, 9, 9, 1), np.uint8), 256, None, "odd")
    with pytest.raises(AcnError, match="acncodec train odd"):
        registry.pick_for(odd)
    off_grid = ImageSet(np.full((2, 8, 8, 1), 7, np.uint8), 256, None, "off-grid digits")
    with pytest.raises(AcnError, match="no shipped model fits"):
        registry.pick_for(off_grid)


def test_digits_folder_round_trips_with_the_shipped_model_and_no_model_option(tmp_path):
    folder = tmp_path / "digits"
    export_png(load("digits:40"), folder)
    r = run(["compress", folder, tmp_path / "d.acnz", "--no-estimate"])   # -q would hide the model's name
    assert r.exit_code == 0, r.output
    assert "shipped digits" in r.output
    r = run(["decompress", tmp_path / "d.acnz", tmp_path / "out", "-q"])
    assert r.exit_code == 0, r.output
    r = run(["compare", folder, tmp_path / "out"])
    assert r.exit_code == 0 and "identical: 40 images" in r.output


def test_models_command_lists_every_shipped_model():
    r = run(["models", "--json"])
    assert r.exit_code == 0
    listed = json.loads(r.output)
    assert [m["name"] for m in listed] == [m.name for m in ALL_SHIPPED]
    assert [m.get("superseded_by") for m in listed] == [m.superseded_by for m in ALL_SHIPPED]
    assert all(os.path.isfile(m["path"]) for m in listed)
    text = run(["models"]).output
    assert all(m.name in text and m.hash[:12] in text for m in ALL_SHIPPED)
    assert "superseded by binarized-mnist" in text


def test_a_shipped_name_works_wherever_a_model_is_asked_for(tmp_path):
    r = run(["model-info", "digits"])
    assert r.exit_code == 0 and json.loads(r.output)["hash"] == registry.by_name("digits").hash
    assert json.loads(r.output)["unconditional_covariance"] == "diag"
    r = run(["model-info", "binarized-mnist"])    # shipped with a full-covariance p(z), 64 components
    info = json.loads(r.output)
    assert info["unconditional_covariance"] == "full" and info["unconditional_components"] == 64
    r = run(["sample", "digits", "-n", "4", "-o", tmp_path / "s.png"])
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file()
    r = run(["model-info", "no-such-model"])
    assert r.exit_code == 1 and "not a shipped model" in r.output and "digits" in r.output


# --- the lookup rules, on a registry of tiny models ---------------------------------------------------

@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    spec = DataSpec(4, 4, 1, 17)
    ref = tmp_path / "reference"
    ref.mkdir()
    model = tiny_model(spec)
    digest = modelfile.save(model, ref / "tiny.acn")
    entry = registry.ShippedModel("tiny", "tiny.acn", digest, spec, "nothing", "acncodec train x", "test")
    (ref / registry.INDEX).write_text(json.dumps({"models": [entry.to_dict()]}))
    monkeypatch.setattr(registry, "REFERENCE_DIR", ref)
    return model, spec


def test_without_model_compress_picks_and_decompress_needs_a_shipped_hash(tmp_path, tiny_registry):
    model, spec = tiny_registry
    data = tmp_path / "x.npy"
    rng = np.random.default_rng(3)
    np.save(data, level_grid(17)[rng.integers(0, 17, (6, 4, 4))])  # 8-bit values on the 17-level grid
    r = run(["compress", data, tmp_path / "a.acnz", "--no-estimate", "--order", "original"])
    assert r.exit_code == 0 and "shipped tiny" in r.output, r.output
    r = run(["decompress", tmp_path / "a.acnz", tmp_path / "a.npy", "-q"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "a.npy").reshape(6, 4, 4), np.load(data))
    other = tiny_model(spec, seed=5)
    modelfile.save(other, tmp_path / "other.acn")
    r = run(["compress", data, tmp_path / "other.acnz", "-m", tmp_path / "other.acn", "-q", "--no-estimate",
             "--order", "original"])
    assert r.exit_code == 0, r.output
    r = run(["decompress", tmp_path / "other.acnz", tmp_path / "out.npy", "-q"])
    assert r.exit_code == 1 and "not a shipped model" in r.output and other.hash[:12] in r.output
    assert not (tmp_path / "out.npy").exists()
    r = run(["decompress", tmp_path / "other.acnz", tmp_path / "out.npy", "-q", "-m", tmp_path / "other.acn"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "out.npy").reshape(6, 4, 4), np.load(data))


def test_the_python_api_example_runs(tmp_path):
    """examples/python_api.py end to end (it asserts its own round trips), with a short training run."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"
    r = subprocess.run([sys.executable, str(script), "--steps", "20", "--images", "120"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exact: True" in r.stdout and "restored in order" in r.stdout and "own model (20 steps)" in r.stdout
