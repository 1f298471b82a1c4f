"""Tests for acncodec.data: every input kind, every input error, binarize, PNG round trips."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acncodec import data
from acncodec.data import DataSpec, ImageSet, binarize, export_png, fit_levels, load, read_idx
from acncodec.errors import AcnError

MNIST_DIR = Path("../shared/data/mnist")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def rand(shape, hi, seed=0):
    return np.random.default_rng(seed).integers(0, hi, size=shape, dtype=np.uint8)


def write_pngs(folder, arrays, mode=None, names=None):
    folder.mkdir(exist_ok=True)
    names = names or [f"img{i:02d}.png" for i in range(len(arrays))]
    for a, name in zip(arrays, names):
        im = Image.fromarray(a.astype(bool) if mode == "1" else a)
        im.save(folder / name)
    return folder


def write_idx(path, images, gz=False, magic=0x00000803):
    n, h, w = images.shape
    raw = b"".join(v.to_bytes(4, "big") for v in (magic, n, h, w)) + images.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


# ---------------------------------------------------------------- loading each kind

def test_folder_grey_sorted_hidden_and_subfolders_skipped(tmp_path):
    imgs = rand((3, 5, 4), 256)
    folder = write_pngs(tmp_path / "f", imgs, names=["b.png", "c.png", "a.png"])
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "sub").mkdir()
    s = load(str(folder))
    assert s.names == ["a.png", "b.png", "c.png"]
    assert s.images.shape == (3, 5, 4, 1) and s.images.dtype == np.uint8 and s.levels == 256
    np.testing.assert_array_equal(s.images[..., 0], imgs[[2, 0, 1]])
    assert len(s) == 3 and str(s.spec) == "5x4x1, 256 levels"


def test_folder_binary_gives_two_levels(tmp_path):
    imgs = rand((2, 6, 7), 2)
    s = load(str(write_pngs(tmp_path / "f", imgs, mode="1")))
    assert s.levels == 2 and s.images.shape == (2, 6, 7, 1)
    np.testing.assert_array_equal(s.images[..., 0], imgs)


def test_folder_rgb(tmp_path):
    imgs = rand((2, 3, 4, 3), 256)
    s = load(str(write_pngs(tmp_path / "f", imgs)))
    assert s.images.shape == (2, 3, 4, 3) and s.levels == 256
    np.testing.assert_array_equal(s.images, imgs)


@pytest.mark.parametrize("shape,hi,levels", [((4, 5, 6), 256, 256), ((4, 5, 6, 3), 200, 256),
                                             ((4, 5, 6, 1), 2, 2)])
def test_npy(tmp_path, shape, hi, levels):
    a = rand(shape, hi).astype(np.int64)
    np.save(tmp_path / "a.npy", a)
    s = load(str(tmp_path / "a.npy"))
    assert s.levels == levels and s.names is None and s.images.dtype == np.uint8
    np.testing.assert_array_equal(s.images.reshape(a.shape), a)
    assert s.images.ndim == 4


def test_npz_single_and_keyed(tmp_path):
    a, b = rand((3, 4, 4), 256), rand((2, 4, 4), 2)
    np.savez(tmp_path / "one.npz", x=a)
    np.testing.assert_array_equal(load(str(tmp_path / "one.npz")).images[..., 0], a)
    np.savez(tmp_path / "two.npz", x=a, y=b)
    s = load(f"{tmp_path / 'two.npz'}:y")
    assert s.levels == 2 and len(s) == 2
    np.testing.assert_array_equal(s.images[..., 0], b)
    with pytest.raises(AcnError, match="two.npz.*KEY"):
        load(str(tmp_path / "two.npz"))
    with pytest.raises(AcnError, match="two.npz.*'z'"):
        load(f"{tmp_path / 'two.npz'}:z")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_plain_and_gzipped_detected_by_magic(tmp_path, gz):
    imgs = rand((5, 3, 2), 256)
    path = write_idx(tmp_path / "images-no-extension", imgs, gz=gz)
    np.testing.assert_array_equal(read_idx(path), imgs)
    s = load(str(path))
    assert s.images.shape == (5, 3, 2, 1) and s.levels == 256
    np.testing.assert_array_equal(s.images[..., 0], imgs)


def test_digits():
    s = load("digits")
    assert s.images.shape == (1797, 8, 8, 1) and s.levels == 17 and s.images.max() == 16
    test = load("digits:test")
    assert len(test) == 300 and len(load("digits:train")) == 1497
    np.testing.assert_array_equal(test.images, s.images[-300:])
    np.testing.assert_array_equal(load("digits:train:10").images, s.images[:10])
    np.testing.assert_array_equal(load("digits:7").images, s.images[:7])


def test_mnist_splits_from_env_dir(tmp_path, monkeypatch):
    # 60,000 tiny images whose first pixel encodes the index, so slices are checkable
    imgs = np.zeros((60000, 2, 2), np.uint8)
    imgs[:, 0, 0] = np.arange(60000) % 251
    imgs[:, 1, 1] = np.arange(60000) // 251
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, gz=True)
    monkeypatch.setenv("ACNCODEC_MNIST_DIR", str(tmp_path))
    sizes = {"mnist": 60000, "mnist:all": 60000, "mnist:train": 50000, "mnist:test": 10000}
    for name, n in sizes.items():
        assert len(load(name)) == n, name
    np.testing.assert_array_equal(load("mnist:test:3").images[..., 0], imgs[50000:50003])
    b = load("binarized-mnist:test:4")
    assert b.levels == 2
    np.testing.assert_array_equal(b.images, binarize(imgs[..., None])[50000:50004])


@pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists()
                    and not (MNIST_DIR / "train-images-idx3-ubyte").exists(),
                    reason="MNIST not at ../shared/data/mnist (run from the repo root)")
def test_real_mnist_splits(monkeypatch):
    monkeypatch.delenv("ACNCODEC_MNIST_DIR", raising=False)
    full, test = load("mnist"), load("mnist:test")
    assert full.images.shape == (60000, 28, 28, 1) and full.levels == 256
    assert len(load("mnist:train")) == 50000 and len(test) == 10000
    np.testing.assert_array_equal(test.images, full.images[50000:])
    b = load("binarized-mnist:test:1000")
    assert b.levels == 2 and b.images.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(b.images, binarize(full.images)[50000:51000])


@pytest.mark.skipif(not FASHION_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_installed(monkeypatch):
    monkeypatch.delenv("ACNCODEC_FASHION_MNIST_DIR", raising=False)
    s = load("fashion-mnist:test:20")
    assert s.images.shape == (20, 28, 28, 1) and s.levels == 256
    assert "t10k" in s.source
    assert len(load("fashion-mnist")) == 10000


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ACNCODEC_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(AcnError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist")


# ---------------------------------------------------------------- input errors

def test_empty_folder(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / ".hidden.png").write_bytes(b"")
    with pytest.raises(AcnError, match="e: folder has no image files"):
        load(str(tmp_path / "e"))


def test_mixed_sizes_names_offending_file(tmp_path):
    f = write_pngs(tmp_path / "f", [rand((4, 4), 256), rand((4, 5), 256)])
    with pytest.raises(AcnError, match=r"img01\.png: size 5x4 differs from 4x4 of img00\.png"):
        load(str(f))


def test_mixed_modes_names_offending_file(tmp_path):
    f = write_pngs(tmp_path / "f", [rand((4, 4), 256), rand((4, 4, 3), 256)])
    with pytest.raises(AcnError, match=r"img01\.png: mode RGB differs from mode L"):
        load(str(f))


def test_text_file_named_png(tmp_path):
    f = write_pngs(tmp_path / "f", [rand((4, 4), 256)])
    (f / "x.png").write_text("not an image")
    with pytest.raises(AcnError, match=r"x\.png: not an image"):
        load(str(f))


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "I;16", "F", "CMYK"])
def test_unaccepted_modes(tmp_path, mode):
    (tmp_path / "f").mkdir()
    fmt = "TIFF" if mode in ("F", "CMYK") else "PNG"
    Image.new(mode, (4, 4)).save(tmp_path / "f" / "bad.img", format=fmt)
    with pytest.raises(AcnError, match=rf"bad\.img: image mode {mode} .*accepted.*RGB"):
        load(str(tmp_path / "f"))


def test_truncated_or_overlong_idx(tmp_path):
    raw = write_idx(tmp_path / "t", rand((4, 3, 3), 256)).read_bytes()
    (tmp_path / "t").write_bytes(raw[:-5])
    with pytest.raises(AcnError, match="t: truncated or corrupt"):
        load(str(tmp_path / "t"))
    (tmp_path / "g").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(AcnError, match="g: truncated or corrupt"):
        load(str(tmp_path / "g"))
    (tmp_path / "x").write_bytes(raw + b"\0")
    with pytest.raises(AcnError, match="x: truncated or corrupt"):
        load(str(tmp_path / "x"))
    (tmp_path / "h").write_bytes(gzip.compress(raw)[:-12])  # cut inside the gzip stream
    with pytest.raises(AcnError, match="h: cannot read IDX"):
        load(str(tmp_path / "h"))


def test_wrong_idx_magic(tmp_path):
    path = write_idx(tmp_path / "labels.idx", rand((4, 3, 3), 256), magic=0x00000801)
    with pytest.raises(AcnError, match=r"labels\.idx: not an IDX image file \(magic 0x00000801"):
        load(str(path))


@pytest.mark.parametrize("array,problem", [
    (np.zeros((2, 3, 3), np.float32), "not integer"),
    (np.zeros((3, 3), np.uint8), "shape"),
    (np.zeros((0, 3, 3), np.uint8), "shape"),
    (np.zeros((2, 3, 3, 2), np.uint8), "shape"),
    (np.full((2, 3, 3), 300, np.int32), "outside 0..255"),
    (np.full((2, 3, 3), -1, np.int32), "outside 0..255"),
])
def test_bad_npy(tmp_path, array, problem):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(AcnError, match=rf"bad\.npy.*{problem}"):
        load(str(tmp_path / "bad.npy"))


@pytest.mark.parametrize("source,problem", [
    ("no-such-thing", "accepted: a folder"), ("mnist:dev", "unknown split"),
    ("digits:test:301", "COUNT"), ("digits:all:0", "COUNT"), ("digits:a:b:c", "accepted"),
])
def test_unknown_names(source, problem):
    with pytest.raises(AcnError, match=f"{source}.*{problem}"):
        load(source)


def test_binarize_option_needs_256_levels():
    with pytest.raises(AcnError, match="digits.*256-level"):
        load("digits:5", binarize=True)


# ---------------------------------------------------------------- binarize and levels

def test_binarize_deterministic_and_unbiased():
    grey = np.full((50, 64, 64, 1), 64, np.uint8)
    a, b, c = binarize(grey, 0), binarize(grey, 0), binarize(grey, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {0, 1} and a.dtype == np.uint8 and a.shape == grey.shape
    assert abs(a.mean() - 64 / 255) < 0.005
    assert binarize(np.zeros((3, 4, 4, 1), np.uint8)).max() == 0
    assert binarize(np.full((3, 4, 4, 1), 255, np.uint8)).min() == 1


def test_binarize_matches_the_documented_rule_across_chunks():
    x = np.random.default_rng(5).integers(0, 256, size=(5_000_000,), dtype=np.uint8)
    u = np.random.Generator(np.random.PCG64(3)).random(x.size)
    np.testing.assert_array_equal(binarize(x, 3), (u < x / 255).astype(np.uint8))
    # golden values (numpy 2.4, PCG64): a change of rule would silently change binarized-mnist
    got = binarize(np.arange(0, 256, 16, dtype=np.uint8), 0)
    assert got.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1]
    assert int(binarize(np.full((100, 28, 28, 1), 100, np.uint8), 0).sum()) == 30590


def test_fit_levels_grid_and_off_grid():
    grid = data.level_grid(17)
    assert grid[0] == 0 and grid[-1] == 255 and grid[1] == 16 and grid[8] == 128
    for levels in range(2, 257):
        assert np.all(np.diff(data.level_grid(levels).astype(int)) > 0)
    k = rand((2, 3, 3, 1), 17)
    s = fit_levels(ImageSet(grid[k], 256, None, "src.npy"), 17)
    assert s.levels == 17
    np.testing.assert_array_equal(s.images, k)
    with pytest.raises(AcnError, match="src.npy.*off the 17-level grid"):
        fit_levels(ImageSet(np.full((1, 2, 2, 1), 17, np.uint8), 256, None, "src.npy"), 17)


def test_load_levels_argument(tmp_path):
    np.save(tmp_path / "a.npy", data.level_grid(5)[rand((3, 4, 4), 5)])
    assert load(str(tmp_path / "a.npy"), levels=5).images.max() <= 4
    with pytest.raises(AcnError, match=r"a\.npy.*off the 4-level grid"):
        load(str(tmp_path / "a.npy"), levels=4)


# ---------------------------------------------------------------- export round trips

@pytest.mark.parametrize("levels,channels", [(2, 1), (17, 1), (256, 1), (256, 3), (17, 3), (2, 3)])
def test_export_round_trip(tmp_path, levels, channels):
    orig = ImageSet(rand((12, 7, 5, channels), levels, seed=levels), levels, None, "t")
    names = export_png(orig, tmp_path / "out")
    assert names[0] == "00000.png" and names[-1] == "00011.png"
    back = load(str(tmp_path / "out"))
    assert back.names == names
    if levels == 2 and channels == 1:
        assert back.levels == 2  # 1-bit PNGs load as binary directly
        assert Image.open(tmp_path / "out" / names[0]).mode == "1"
    np.testing.assert_array_equal(fit_levels(back, levels).images, orig.images)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_digits_export_reads_back_as_17_levels(tmp_path):
    d = load("digits:50")
    export_png(d, tmp_path / "d")
    np.testing.assert_array_equal(load(str(tmp_path / "d"), levels=17).images, d.images)


def test_export_into_an_existing_folder_leaves_other_files_and_refuses_same_names(tmp_path):
    s = ImageSet(rand((2, 3, 3, 1), 256), 256, None, "t")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert export_png(s, tmp_path / "full") == ["00000.png", "00001.png"]
    assert sorted(os.listdir(tmp_path / "full")) == ["00000.png", "00001.png", "keep.txt"]
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    before = (tmp_path / "full" / "00000.png").read_bytes()
    other = ImageSet(rand((2, 3, 3, 1), 256, seed=5), 256, None, "t")
    with pytest.raises(AcnError, match=r"00000\.png already exists \(use --force"):
        export_png(other, tmp_path / "full")
    assert (tmp_path / "full" / "00000.png").read_bytes() == before
    export_png(other, tmp_path / "full", force=True)
    assert (tmp_path / "full" / "00000.png").read_bytes() != before
    assert sorted(os.listdir(tmp_path / "full")) == ["00000.png", "00001.png", "keep.txt"]


def test_export_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(image, levels):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return Image.fromarray(image[..., 0])

    monkeypatch.setattr(data, "_to_pil", failing)
    with pytest.raises(AcnError, match="out: cannot write PNGs: disk full"):
        export_png(ImageSet(rand((5, 3, 3, 1), 256), 256, None, "t"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_names(tmp_path):
    s = ImageSet(rand((2, 3, 3, 1), 256), 256, ["b.jpg", "a.png"], "t")
    assert export_png(s, tmp_path / "o", names=s.names) == ["b.png", "a.png"]
    assert sorted(os.listdir(tmp_path / "o")) == ["a.png", "b.png"]
    with pytest.raises(AcnError, match="not a plain"):
        export_png(s, tmp_path / "p", names=["../x.png", "a.png"])
    with pytest.raises(AcnError, match="restored to the same file"):
        export_png(s, tmp_path / "q", names=["a.jpg", "a.png"])
    assert data._png_names(100001, None, tmp_path)[-1] == "100000.png"


# ---------------------------------------------------------------- DataSpec

def test_dataspec_round_trip_and_validation():
    spec = DataSpec(28, 28, 1, 2)
    assert str(spec) == "28x28x1, 2 levels"
    assert DataSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(AcnError, match="model.json.*invalid data spec"):
        DataSpec.from_dict({"height": 28, "width": 28, "channels": 1}, where="model.json")
    with pytest.raises(AcnError, match="model.json"):
        DataSpec.from_dict({"height": 28, "width": 28, "channels": 2, "levels": 2}, "model.json")
