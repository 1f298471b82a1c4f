"""Arrays as a scikit-learn user holds them, and the Python API from a script (issue 14, points 3 and 6)."""

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits

import acncodec
from acncodec import registry
from acncodec.cli import main
from acncodec.data import declare_levels, from_array, level_grid
from acncodec.errors import AcnError


@pytest.fixture(scope="module")
def digits_values():
    """Digits exactly as scikit-learn holds them, as uint8: values 0..16."""
    return load_digits().images.astype(np.uint8)[:120]


def test_values_0_to_16_pick_the_17_level_model(digits_values, tmp_path):
    np.save(tmp_path / "d.npy", digits_values)
    assert registry.pick_for(acncodec.load(str(tmp_path / "d.npy"))).name == "digits"
    run = CliRunner().invoke
    r = run(main, ["compress", str(tmp_path / "d.npy"), str(tmp_path / "d.acnz"), "--no-estimate",
                   "--order", "original"])
    assert r.exit_code == 0, r.output
    assert "shipped digits" in r.stderr
    r = run(main, ["decompress", str(tmp_path / "d.acnz"), str(tmp_path / "r.npy"), "-q"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "r.npy"), digits_values)


def test_levels_option_and_model_by_name(digits_values, tmp_path):
    few = digits_values[:40].copy()
    few[:, 0, 0] = 0   # whatever the values, --levels says what they are
    np.save(tmp_path / "d.npy", few)
    run = CliRunner().invoke
    r = run(main, ["compress", str(tmp_path / "d.npy"), str(tmp_path / "d.acnz"), "--model", "digits",
                   "--levels", "17", "--no-estimate"])
    assert r.exit_code == 0, r.output
    r = run(main, ["decompress", str(tmp_path / "d.acnz"), str(tmp_path / "r.npy"), "-q"])
    assert r.exit_code == 0
    assert sorted(map(bytes, np.load(tmp_path / "r.npy"))) == sorted(map(bytes, few))
    r = run(main, ["compress", str(tmp_path / "d.npy"), str(tmp_path / "e.acnz"), "--levels", "3"])
    assert r.exit_code == 1 and "off the 3-level grid" in r.output and "Traceback" not in r.output


def test_declared_levels_keep_8_bit_values_and_read_small_values_as_indices():
    grid = level_grid(17)[np.arange(17)].reshape(1, 17, 1)
    as_8bit = declare_levels(from_array(grid), 17)
    assert as_8bit.levels == 256 and np.array_equal(as_8bit.images[..., 0], grid)   # mapped by the model later
    small = declare_levels(from_array(np.arange(17, dtype=np.uint8).reshape(1, 17, 1)), 17)
    assert small.levels == 17
    with pytest.raises(AcnError, match="off the 17-level grid"):
        declare_levels(from_array(np.full((1, 2, 2), 200, dtype=np.uint8)), 17)


def test_api_compresses_a_plain_array(digits_values):
    blob, report = acncodec.compress(digits_values[:60], order="original", estimate=False)
    restored, header = acncodec.decompress(blob)
    assert np.array_equal(restored.images[..., 0], digits_values[:60])
    assert report["baseline"]["tool"] == "xz -9" and 0 < report["baseline"]["bits_per_dim"] < 8
    blob, _ = acncodec.compress(digits_values[:60], "digits", levels=17, estimate=False)
    restored, _ = acncodec.decompress(blob)
    assert sorted(map(bytes, restored.images[..., 0])) == sorted(map(bytes, digits_values[:60]))


def test_version_and_short_reprs(digits_values):
    from importlib.metadata import version
    assert acncodec.__version__ == version("acncodec")
    images = acncodec.load("digits:50")
    text = repr(images)
    assert len(text) < 200 and "50 images" in text and "8x8x1" in text and "17 levels" in text
    model = acncodec.load_model("digits")
    text = repr(model)
    assert len(text) < 300 and model.hash[:12] in text and "Conv2d" not in text
    assert callable(acncodec.train) and acncodec.TrainConfig().minutes > 0


def test_levels_with_a_model_keep_8_bit_values_as_they_were(tmp_path):
    """--levels declares; it does not convert: 8-bit values on the 17-level grid come back as 8-bit values."""
    grid_values = level_grid(17)[load_digits().images.astype(np.uint8)[:30]]
    np.save(tmp_path / "g.npy", grid_values)
    run = CliRunner().invoke
    r = run(main, ["compress", str(tmp_path / "g.npy"), str(tmp_path / "g.acnz"), "--model", "digits",
                   "--levels", "17", "--order", "original", "--no-estimate", "-q"])
    assert r.exit_code == 0, r.output
    r = run(main, ["decompress", str(tmp_path / "g.acnz"), str(tmp_path / "r.npy"), "-q"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "r.npy"), grid_values)
