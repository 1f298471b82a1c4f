"""The representation tools (acncodec/represent.py and the sample/reconstruct/daydream/neighbours/probe commands).

Tiny untrained models (helpers.tiny_model) check shapes, ranges, seeding, the sampler against full parallel
passes, grids and refusals; one test runs the shipped digits model.
"""

import copy
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from acncodec import data as datamod
from acncodec import modelfile, registry, represent
from acncodec.cli import main
from acncodec.data import DataSpec, ImageSet, level_grid
from acncodec.errors import AcnError
from helpers import SPECS, random_images, tiny_model



@pytest.fixture(scope="module")
def models():
    return {kind: tiny_model(spec) for kind, spec in SPECS.items()}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("represent")
    paths = {}
    for kind in ("binary", "digits-like"):
        paths[kind] = root / f"{kind}.acn"
        modelfile.save(models[kind], paths[kind])
    np.save(root / "binary.npy", random_images(SPECS["binary"], 12).images)           # fits the binary model
    np.save(root / "rgb.npy", random_images(SPECS["rgb"], 12).images.astype(np.uint8))  # does not
    np.save(root / "labels.npy", np.arange(12) % 2)
    return root, paths


def check_images(x, spec: DataSpec, n: int):
    assert isinstance(x, np.ndarray) and x.dtype == np.uint8
    assert x.shape == (n, spec.height, spec.width, spec.channels)
    assert int(x.max()) < spec.levels


# ------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("kind", SPECS)
def test_sample_shapes_ranges_and_seeding(models, kind):
    model, spec = models[kind], SPECS[kind]
    a = represent.sample(model, 6, seed=3)
    check_images(a, spec, 6)
    assert np.array_equal(a, represent.sample(model, 6, seed=3))
    assert not np.array_equal(a, represent.sample(model, 6, seed=4))
    z = represent.sample_prior(model, 6, seed=3)
    assert z.shape == (6, model.config.latent_dim) and z.dtype == np.float32
    assert np.array_equal(represent.sample_pixels(model, z, seed=3), a)  # sample = prior draw, then pixels


def test_prior_samples_follow_the_unconditional_mixture(models):
    model = models["digits-like"]
    prior = model.unconditional
    z = represent.sample_prior(model, 4000, seed=0).astype(np.float64)
    mean = (prior.weights[:, None] * prior.means).sum(0)
    second = (prior.weights[:, None] * (prior.variances + prior.means ** 2)).sum(0)
    assert np.allclose(z.mean(0), mean, atol=0.1)
    assert np.allclose(z.var(0), second - mean ** 2, rtol=0.15)


def reference_sample(net, spec, z, gen):
    """Ancestral sampling with one full parallel pass per pixel channel, drawing like represent does."""
    dec = net.decoder
    n, c_, h_, w_ = len(z), spec.channels, spec.height, spec.width
    x = torch.zeros(n, c_, h_, w_, dtype=torch.long)
    with torch.no_grad():
        for i in range(h_):
            for j in range(w_):
                for c in range(c_):
                    logits = dec.logits(x, z)[:, c, :, i, j]
                    if dec.binary:
                        x[:, c, i, j] = (torch.rand(n, generator=gen) < torch.sigmoid(logits[:, 0])).long()
                    else:
                        x[:, c, i, j] = torch.multinomial(F.softmax(logits.double(), -1), 1, generator=gen)[:, 0]
    return x.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("kind", ["binary", "digits-like", "rgb"])
def test_sampler_agrees_with_full_passes(models, kind):
    """Raster order, channel order and the conditioning on z, checked against the parallel network."""
    model, spec = copy.deepcopy(models[kind]), SPECS[kind]
    with torch.no_grad():  # an untrained decoder hardly reads z, and its outputs are near uniform: sharpen
        decoder = model.net.decoder
        decoder.condition_map.fc.weight *= 10
        for layer in decoder.layers:
            layer.cond.weight *= 10
        decoder.head.logits.weight *= 10
    z = torch.randn(4, model.config.latent_dim, generator=torch.Generator().manual_seed(5)) * 2
    got = represent.sample_pixels(model, z.numpy(), seed=11)
    want = reference_sample(model.net, spec, z, represent._generator(11, 0))
    assert np.array_equal(got, want)
    # the latent matters: other latents, same random stream, other images
    other = represent.sample_pixels(model, (z + 2).numpy(), seed=11)
    assert not np.array_equal(got, other)


def test_sample_pixels_rejects_wrong_latents(models):
    with pytest.raises(AcnError, match="latent"):
        represent.sample_pixels(models["binary"], np.zeros((2, 7)), seed=0)


# --------------------------------------------------------------------------- reconstruct and daydream
@pytest.mark.parametrize("kind", ["binary", "rgb"])
def test_reconstruct(models, kind):
    model, spec = models[kind], SPECS[kind]
    images = random_images(spec, 5)
    a = represent.reconstruct(model, images, seed=1)
    check_images(a, spec, 5)
    assert np.array_equal(a, represent.reconstruct(model, images.images, seed=1))  # ImageSet or array
    assert not np.array_equal(a, represent.reconstruct(model, images, seed=2))
    codes = represent._codes(model, images.images).numpy()
    assert np.array_equal(a, represent.sample_pixels(model, codes, seed=1))  # decoded from z = E(x)


def test_reconstruct_refuses_data_of_another_spec(models):
    with pytest.raises(AcnError, match="model is for"):
        represent.reconstruct(models["binary"], random_images(SPECS["rgb"], 3), seed=0)
    with pytest.raises(AcnError, match="level indices"):
        represent.reconstruct(models["binary"], np.full((2, 5, 6, 1), 2, np.uint8), seed=0)


def test_daydream(models):
    model, spec = models["digits-like"], SPECS["digits-like"]
    start = random_images(spec, 3).images
    chain = represent.daydream(model, start[0], steps=4, seed=0)
    check_images(chain, spec, 5)
    assert np.array_equal(chain[0], start[0])
    assert np.array_equal(chain, represent.daydream(model, start[0], steps=4, seed=0))
    assert not np.array_equal(chain, represent.daydream(model, start[0], steps=4, seed=1))
    assert len({im.tobytes() for im in chain}) > 2  # it moves
    batch = represent.daydream(model, start, steps=2, seed=0)
    assert batch.shape == (3, 3) + start.shape[1:] and np.array_equal(batch[:, 0], start)
    assert represent.daydream(model, start[0], steps=0, seed=0).shape == (1,) + start.shape[1:]
    # one step is: encode, z ~ p(z|code) (its own stream), decode by sampling (the pixel stream)
    with torch.no_grad():
        z = represent._sample_mixture(model.net.prior(represent._codes(model, start)), represent._generator(7, 2))
    step = represent.sample_pixels(model, z.numpy(), seed=7)
    assert np.array_equal(represent.daydream(model, start, steps=1, seed=7)[:, 1], step)


def test_daydream_draws_from_the_conditional_prior(models):
    """The first step's latent is z ~ p(z|E(x)): its mean matches the mixture's mean."""
    model = models["digits-like"]
    code = represent._codes(model, random_images(SPECS["digits-like"], 1).images)
    mix = model.net.prior(code.expand(4000, -1))
    z = represent._sample_mixture(mix, torch.Generator().manual_seed(0))
    w = mix.log_weights.exp()
    mean = (w * mix.means).sum(-1)[0]
    std = ((w * (mix.scales ** 2 + mix.means ** 2)).sum(-1)[0] - mean ** 2).sqrt()
    assert z.shape == (4000, model.config.latent_dim)
    assert torch.all((z.mean(0) - mean).abs() < 5 * std / 4000 ** 0.5 + 1e-6)


# ----------------------------------------------------------------------------------------- neighbours
def test_neighbours(models):
    model, spec = models["grey"], SPECS["grey"]
    images = random_images(spec, 10, seed=3).images
    images[7] = images[2]  # an exact duplicate: the nearest in pixel space
    images[7, 0, 0, 0] ^= 1
    found = represent.neighbours(model, images, [2, 5], k=4)
    assert found["code"].shape == found["pixel"].shape == (2, 4)
    for kind in ("code", "pixel"):
        assert not (found[kind] == np.array([[2], [5]])).any()  # never the query itself
        assert found[kind].min() >= 0 and found[kind].max() < 10
    assert found["pixel"][0, 0] == 7
    codes = represent._codes(model, images).numpy()
    d = ((codes[:, None] - codes[None]) ** 2).sum(-1)
    for row, q in enumerate([2, 5]):
        order = [i for i in np.argsort(d[q], kind="stable") if i != q][:4]
        assert np.allclose(np.sort(d[q, found["code"][row]]), np.sort(d[q, order]), rtol=1e-4)
    with pytest.raises(AcnError, match="out of range"):
        represent.neighbours(model, images, [10], k=2)
    with pytest.raises(AcnError, match="k must be"):
        represent.neighbours(model, images, [0], k=10)


# ---------------------------------------------------------------------------------------------- probe
def two_classes(n, seed):
    """Class 0 bright on the left half, class 1 on the right, plus noise: easy for pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 4, 5, 1))
    x[y == 0, :, :2] += 180
    x[y == 1, :, 3:] += 180
    return x.astype(np.uint8), y


def test_probe_on_an_easy_set(models):
    model = models["grey"]
    xtr, ytr = two_classes(80, 0)
    xte, yte = two_classes(40, 1)
    result = represent.probe(model, xtr, ytr, xte, yte, pca_components=3, seed=0)
    assert set(result["accuracy"]) == {"code", "pixels", "pca"}
    assert all(0.0 <= a <= 1.0 for a in result["accuracy"].values())
    assert result["accuracy"]["pixels"] >= 0.95 and result["accuracy"]["pca"] >= 0.95
    assert result["dims"] == {"code": model.config.latent_dim, "pixels": 20, "pca": 3}
    assert result["n_train"] == 80 and result["n_test"] == 40 and result["classes"] == 2
    # scrambled training labels: no better than chance, so the probe really uses the labels
    bad = represent.probe(model, xtr, np.random.default_rng(5).permutation(ytr), xte, yte, 3)
    assert bad["accuracy"]["pixels"] < 0.8
    with pytest.raises(AcnError, match="labels"):
        represent.probe(model, xtr, ytr[:-1], xte, yte)


# ---------------------------------------------------------------------------------------------- grids
def test_grid_png(tmp_path):
    spec = SPECS["digits-like"]
    rows = [random_images(spec, 3, seed=1).images, random_images(spec, 2, seed=2).images]
    path = tmp_path / "g.png"
    picture = represent.grid_png(rows, spec.levels, path, scale=3)
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (3 * 4 * 3 + 2, 2 * 4 * 3 + 1)
        assert np.array_equal(np.asarray(im), picture[..., 0])
    assert picture[12, 0, 0] == represent.SEPARATOR and picture[0, 12, 0] == represent.SEPARATOR
    assert picture[13:, 26:].min() == picture[13:, 26:].max() == represent.SEPARATOR  # short row padded
    assert np.array_equal(picture[:12:3, 13:25:3, 0], level_grid(17)[rows[0][1][..., 0]])
    assert represent.grid_image(rows, 17).shape == (2 * 32 + 1, 3 * 32 + 2, 1)  # default: >= 32 pixels tall
    with pytest.raises(AcnError, match="already exists"):
        represent.grid_png(rows[:1], spec.levels, path)
    before = path.read_bytes()
    represent.grid_png(rows[:1], spec.levels, path, force=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]  # no temporary left behind
    rgb = represent.grid_image([random_images(SPECS["rgb"], 2).images], 256, scale=1)
    assert rgb.shape == (3, 2 * 4 + 1, 3)
    with pytest.raises(AcnError):
        represent.grid_image([rows[0]], 4)  # values beyond 4 levels


# --------------------------------------------------------------------------------------------- labels
def test_labels_and_images_are_cut_the_same_way():
    for source in ("digits", "digits:test", "digits:train:40"):
        assert len(represent.load_labels(source)) == len(datamod.load(source))


def test_load_labels_builtin_and_files(tmp_path):
    from sklearn.datasets import load_digits
    target = load_digits().target
    assert np.array_equal(represent.load_labels("digits:test"), target[1497:])
    assert len(represent.load_labels("digits")) == 1797
    assert np.array_equal(represent.load_labels("digits:train:5"), target[:5])
    assert np.array_equal(represent.load_labels("digits:7"), target[:7])
    assert len(datamod.load("digits:test")) == len(represent.load_labels("digits:test"))
    for bad in ("digits:nosplit", "digits:train:0", "nothing-here"):
        with pytest.raises(AcnError):
            represent.load_labels(bad)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    idx = b"\x00\x00\x08\x01" + len(labels).to_bytes(4, "big") + labels.tobytes()
    (tmp_path / "l.idx").write_bytes(idx)
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx))
    np.save(tmp_path / "l.npy", labels.astype(np.int32))
    for name in ("l.idx", "l.gz", "l.npy"):
        assert np.array_equal(represent.load_labels(str(tmp_path / name)), labels)
    (tmp_path / "short").write_bytes(idx[:-1])
    (tmp_path / "images").write_bytes(b"\x00\x00\x08\x03" + idx[4:])
    for name in ("short", "images"):
        with pytest.raises(AcnError, match=name):
            represent.load_labels(str(tmp_path / name))


def test_load_labels_mnist_when_present():
    try:
        labels = represent.load_labels("mnist:test:100")
    except AcnError as e:
        pytest.skip(f"MNIST not available: {e}")
    assert labels.shape == (100,) and labels.max() <= 9
    assert np.array_equal(represent.load_labels("binarized-mnist:test:100"), labels)


# ------------------------------------------------------------------------------------------------ CLI
def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    torch.set_num_threads(1)
    return result


def one_line_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def commands(root, model, data, out):
    return {"sample": ["sample", model, "-o", out, "-n", "3"],
            "reconstruct": ["reconstruct", model, data, "-o", out, "-n", "3"],
            "daydream": ["daydream", model, data, "-o", out, "--steps", "2", "--rows", "2"],
            "neighbours": ["neighbours", model, data, "-o", out, "--queries", "0,4", "-k", "3"],
            "probe": ["probe", model, data, data, "--train-labels", root / "labels.npy",
                      "--test-labels", root / "labels.npy", "--json", out]}


@pytest.mark.parametrize("command", ["reconstruct", "daydream", "neighbours", "probe"])
def test_cli_refuses_mismatched_data(model_files, tmp_path, command):
    root, paths = model_files
    out = tmp_path / "out.png"
    message = one_line_error(run(commands(root, paths["binary"], root / "rgb.npy", out)[command]))
    assert "3x4x3" in message and "5x6x1" in message  # names both specs
    assert not out.exists()


@pytest.mark.parametrize("command", ["sample", "reconstruct", "daydream", "neighbours", "probe"])
def test_cli_writes_and_refuses_to_overwrite(model_files, tmp_path, command):
    root, paths = model_files
    out = tmp_path / "out.png"
    args = commands(root, paths["binary"], root / "binary.npy", out)[command]
    result = run(args)
    assert result.exit_code == 0, result.output
    first = out.read_bytes()
    if command == "probe":
        import json
        record = json.loads(first)
        assert all(0 <= a <= 1 for a in record["accuracy"].values())
    else:
        with Image.open(out) as im:
            assert im.format == "PNG" and im.mode == "L"
    out.write_bytes(b"keep")
    message = one_line_error(run(args))
    assert "already exists" in message and out.read_bytes() == b"keep"
    assert run(args + ["--force"]).exit_code == 0
    assert out.read_bytes() == first  # same seed, same bytes


def test_cli_seed_changes_the_picture(model_files, tmp_path):
    _, paths = model_files
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        assert run(["sample", paths["binary"], "-o", out, "-n", "4", "--seed", seed]).exit_code == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    with Image.open(a) as im:  # 4 samples: 2 rows of 2, 5x6 images upscaled 7x
        assert im.size == (2 * 6 * 7 + 1, 2 * 5 * 7 + 1)


def test_cli_probe_needs_labels_for_files(model_files, tmp_path):
    root, paths = model_files
    message = one_line_error(run(["probe", paths["binary"], root / "binary.npy", root / "binary.npy"]))
    assert "--train-labels" in message
    message = one_line_error(run(["probe", paths["binary"], root / "binary.npy", root / "binary.npy",
                                  "--train-labels", root / "labels.npy", "--test-labels", root / "rgb.npy"]))
    assert "labels" in message


def test_cli_daydream_start_out_of_range(model_files, tmp_path):
    root, paths = model_files
    message = one_line_error(run(["daydream", paths["binary"], root / "binary.npy", "-o", tmp_path / "d.png",
                                  "--start", "11", "--rows", "2"]))
    assert "12 images" in message


# ------------------------------------------------------------------------------ the shipped digits model
def test_shipped_digits_model(tmp_path):
    model = registry.by_name("digits").load()
    spec = model.spec
    samples = represent.sample(model, 4, seed=0)
    check_images(samples, spec, 4)
    test = datamod.load("digits:test")
    rec = represent.reconstruct(model, ImageSet(test.images[:4], 17, None, "digits"), seed=0)
    check_images(rec, spec, 4)
    # reconstructions resemble their own originals more than other images
    own = np.abs(rec.astype(int) - test.images[:4]).mean()
    shuffled = np.abs(rec.astype(int) - test.images[[1, 2, 3, 0]]).mean()
    assert own < shuffled
    result = represent.probe(model, datamod.load("digits:train"), represent.load_labels("digits:train"),
                             test, represent.load_labels("digits:test"))
    assert result["n_test"] == 300 and result["classes"] == 10
    assert result["accuracy"]["pixels"] > 0.85
    assert result["accuracy"]["code"] > 0.3  # far above chance (0.1): the codes carry the class
    picture = represent.grid_png([samples, rec], spec.levels, tmp_path / "demo.png")
    assert picture.shape == (2 * 32 + 1, 4 * 32 + 3, 1)
