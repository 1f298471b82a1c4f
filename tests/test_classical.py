"""bench/classical.py: every classical baseline round-trips exactly, sizes add up, binary data are bit-packed,
and a missing JPEG XL tool or WebP support is reported as skipped."""

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from acncodec.data import ImageSet

_PATH = Path(__file__).resolve().parents[1] / "bench" / "classical.py"
_spec = importlib.util.spec_from_file_location("bench_classical", _PATH)
classical = importlib.util.module_from_spec(_spec)
sys.modules["bench_classical"] = classical
_spec.loader.exec_module(classical)


def _data(kind: str) -> ImageSet:
    rng = np.random.default_rng(3)
    shape, levels = {"binary": ((10, 6, 7, 1), 2), "levels17": ((5, 6, 7, 1), 17),
                     "rgb": ((4, 5, 6, 3), 256)}[kind]
    images = rng.integers(0, levels, shape, dtype=np.uint8)
    images[0] = 0  # some structure, and both ends of the range
    images[1, ...] = levels - 1
    return ImageSet(images, levels, None, kind)


def _expected_skips() -> dict:
    """Codecs this machine cannot run, each with what would make it available."""
    skips = {}
    if classical.jxl_tools() is None:
        skips["jxl"] = "cjxl/djxl not installed (apt-get install libjxl-tools, or bench/classical.py --install)"
    if not classical.features.check("webp"):
        skips["webp"] = "this Pillow was built without WebP support"
    return skips


@pytest.mark.parametrize("kind", ["binary", "levels17", "rgb"])
def test_every_available_codec_round_trips_and_sizes_add_up(kind):
    data = _data(kind)
    results = classical.classical_sizes(data)
    assert list(results) == list(classical.CODECS)
    dims = data.images.size
    for codec, r in results.items():
        if "skipped" in r:
            assert codec in _expected_skips(), (codec, r)
            continue
        assert r["verified"] is True
        assert isinstance(r["bytes"], int) and r["bytes"] > 0
        assert r["bits_per_dim"] == pytest.approx(8 * r["bytes"] / dims)
        assert r["encode_seconds"] >= 0 and r["decode_seconds"] >= 0
        assert isinstance(r["what"], str) and r["what"]
    assert ("packbits" in results["gzip"]["what"]) == (kind == "binary")
    if kind == "levels17":  # image codecs get the 8-bit grid, general-purpose ones the indices
        assert "grid" in results["png"]["what"] and "not the 8-bit grid" in results["xz"]["what"]


def _flip_general(orig):
    def bad(*args, **kwargs):
        out = orig(*args, **kwargs).copy()
        out[0, 0, 0, 0] ^= 1
        return out
    return bad


def _flip_8bit(orig):
    def bad(*args, **kwargs):
        out = orig(*args, **kwargs).copy()
        out[-1, -1, -1, -1] = 255 - out[-1, -1, -1, -1]
        return out
    return bad


@pytest.mark.parametrize("codec,decoder,flip", [
    ("gzip", "_decode_general", _flip_general), ("xz", "_decode_general", _flip_general),
    ("png", "_decode_png", _flip_8bit), ("webp", "_decode_webp", _flip_8bit), ("jxl", "_decode_jxl", _flip_8bit)])
@pytest.mark.parametrize("kind", ["binary", "levels17", "rgb"])
def test_a_corrupted_decode_is_detected(monkeypatch, codec, decoder, flip, kind):
    if codec in _expected_skips():
        pytest.skip(f"{codec}: {_expected_skips()[codec]}")
    monkeypatch.setattr(classical, decoder, flip(getattr(classical, decoder)))
    with pytest.raises(classical.RoundTripError, match=codec):
        classical.classical_sizes(_data(kind), codecs=(codec,))


def test_binary_data_are_bit_packed_before_gzip():
    rng = np.random.default_rng(0)
    a = (rng.random((10, 10, 10, 1)) < 0.5).astype(np.uint8)  # 1,000 random binary pixels
    r = classical.classical_sizes(ImageSet(a, 2, None, "random"), codecs=("gzip",))["gzip"]
    unpacked = len(gzip.compress(classical._HEADER.pack(*a.shape) + a.tobytes(), compresslevel=9, mtime=0))
    assert r["bytes"] < unpacked
    assert r["bytes"] < 16 + 125 + 40  # about 1 bit a pixel plus header and gzip framing
    assert "packbits" in r["what"]
    # the same pixels declared as 256-level data are not packed
    r256 = classical.classical_sizes(ImageSet(a, 256, None, "random"), codecs=("gzip",))["gzip"]
    assert r256["bytes"] == unpacked


def test_missing_cjxl_is_skipped_not_an_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(classical.shutil, "which", lambda name: None)
    results = classical.classical_sizes(_data("binary"), codecs=("gzip", "jxl"))
    assert results["gzip"]["verified"]
    assert "libjxl-tools" in results["jxl"]["skipped"] and "bytes" not in results["jxl"]
    # the command line says so in one line and still writes the other results
    path = tmp_path / "x.npy"
    np.save(path, _data("binary").images)
    out = tmp_path / "out.json"
    assert classical.main([str(path), "--codecs", "gzip,jxl", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "JPEG XL will be skipped" in printed and "apt-get install -y libjxl-tools" in printed
    saved = json.loads(out.read_text())
    assert "skipped" in saved["datasets"][0]["results"]["jxl"]
    assert saved["datasets"][0]["results"]["gzip"]["verified"] is True


def test_missing_webp_support_is_skipped(monkeypatch):
    monkeypatch.setattr(classical.features, "check", lambda name: False)
    results = classical.classical_sizes(_data("rgb"), codecs=("webp", "png"))
    assert "WebP" in results["webp"]["skipped"] and results["png"]["verified"]


def test_mosaic_is_as_square_as_possible_and_untiles_exactly():
    assert classical.mosaic_grid(1) == (1, 1)
    assert classical.mosaic_grid(2) == (1, 2)
    assert classical.mosaic_grid(1000) == (32, 32)
    assert classical.mosaic_grid(1797) == (42, 43)
    assert classical.mosaic_grid(10000) == (100, 100)
    a = _data("rgb").images
    m = classical.tile(a)
    assert m.shape == (2 * 5, 2 * 6, 3)
    assert np.array_equal(m[5:10, 0:6], a[2])  # row-major: image 2 starts the second row
    assert np.array_equal(classical.untile(m, a.shape), a)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown codecs"):
        classical.classical_sizes(_data("binary"), codecs=("zstd",))
    a = _data("binary").images.copy()
    a[0, 0, 0, 0] = 2
    with pytest.raises(ValueError, match="values must lie"):
        classical.classical_sizes(ImageSet(a, 2, None, "bad"), codecs=("gzip",))


def test_anchors_are_those_of_design_section_8():
    assert set(classical.ANCHORS) == {"binarized-mnist:test:1000", "fashion-mnist:test", "digits"}
    assert classical.ANCHORS["digits"]["jxl"] == 2.286
    assert all(set(v) == set(classical.CODECS) for v in classical.ANCHORS.values())
