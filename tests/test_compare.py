"""compare: by name, in order, or as a set, and it says which (issue 14, point 1)."""

import numpy as np
import pytest
from click.testing import CliRunner

from acncodec import modelfile
from acncodec.cli import main
from acncodec.compare import compare_images
from acncodec.data import ImageSet
from acncodec.errors import AcnError
from helpers import SPECS, random_images, tiny_model


def images(pixels, names=None):
    return ImageSet(np.asarray(pixels, dtype=np.uint8)[..., None, None, None], 256, names, "test")


def test_a_permutation_is_identical_as_a_set_and_says_so():
    a, b = images([1, 2, 3, 4]), images([3, 1, 4, 2])
    result = compare_images(a, b)
    assert (result.mode, result.reordered, result.count) == ("set", True, 4)
    assert "as a set" in result.describe() and "order differs" in result.describe()
    assert compare_images(a, a).mode == "order"
    with pytest.raises(AcnError, match=r"image 0 differs .*same images in another order"):
        compare_images(a, b, "order")


def test_a_set_counts_repeats_and_names_a_missing_image():
    with pytest.raises(AcnError, match="image 1 of test is not among"):
        compare_images(images([1, 1, 2]), images([1, 2, 2]), "set")
    with pytest.raises(AcnError, match="do not hold the same images"):
        compare_images(images([1, 1, 2]), images([2, 1, 2]))


def test_folders_pair_by_name_and_arrays_cannot():
    a = images([1, 2], ["a.png", "b.png"])
    b = images([2, 1], ["b.png", "a.png"])
    assert compare_images(a, b).mode == "name"
    with pytest.raises(AcnError, match="a.png differs"):
        compare_images(a, images([2, 1], ["a.png", "b.png"]))
    with pytest.raises(AcnError, match="two folders"):
        compare_images(images([1, 2]), images([1, 2]), "name")


def test_array_archive_in_tour_order_compares_identical_and_reports_the_reorder(tmp_path):
    """The quickstart's own check on an array: compress (tour), decompress, compare: identical, as a set."""
    spec = SPECS["grey"]
    model = tiny_model(spec)
    modelfile.save(model, tmp_path / "m.acn")
    data = random_images(spec, 40).images[..., 0]
    np.save(tmp_path / "a.npy", data)
    run = CliRunner().invoke
    r = run(main, ["compress", str(tmp_path / "a.npy"), str(tmp_path / "a.acnz"), "-m", str(tmp_path / "m.acn"),
                   "--order", "tour"])
    assert r.exit_code == 0, r.output
    assert "decompress returns the images reordered" in r.stdout
    r = run(main, ["decompress", str(tmp_path / "a.acnz"), str(tmp_path / "r.npy"), "-m", str(tmp_path / "m.acn")])
    assert r.exit_code == 0, r.output
    assert "in tour order, not the order they were compressed in" in r.stdout
    restored = np.load(tmp_path / "r.npy")
    assert not np.array_equal(restored, data)                      # the order did change...
    assert sorted(map(bytes, restored)) == sorted(map(bytes, data))  # ...and every image is there, exact
    r = run(main, ["compare", str(tmp_path / "a.npy"), str(tmp_path / "r.npy")])
    assert r.exit_code == 0, r.output
    assert "identical: 40 images" in r.stdout and "as a set" in r.stdout
    r = run(main, ["compare", str(tmp_path / "a.npy"), str(tmp_path / "r.npy"), "--by", "order"])
    assert r.exit_code == 1 and "--by set" in r.output


def test_decompressed_digits_array_compares_with_its_source(tmp_path):
    """decompress writes 17-level digits as an array of level indices 0..16; compare reads it at the levels of
    the data it is compared with, and still refuses other levels."""
    run = CliRunner().invoke
    assert run(main, ["compress", "digits:60", str(tmp_path / "d.acnz"), "-q"]).exit_code == 0
    assert run(main, ["decompress", str(tmp_path / "d.acnz"), str(tmp_path / "d.npy"), "-q"]).exit_code == 0
    assert np.load(tmp_path / "d.npy").max() <= 16
    r = run(main, ["compare", "digits:60", str(tmp_path / "d.npy")])
    assert r.exit_code == 0, r.output
    assert "identical: 60 images" in r.stdout
    r = run(main, ["compare", "digits:60", str(tmp_path / "d.npy"), "--levels", "256"])
    assert r.exit_code == 1 and "17-level" in r.output and "256 levels" in r.output
    grey = np.load(tmp_path / "d.npy").astype(np.uint8) * 15 + 3        # values past 16: not 17-level indices
    np.save(tmp_path / "g.npy", grey)
    r = run(main, ["compare", "digits:60", str(tmp_path / "g.npy")])
    assert r.exit_code == 1 and "levels" in r.output
