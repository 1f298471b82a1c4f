"""Golden archives (tests/golden/, written by make_golden.py): one per data kind, decoded here to exact pixels,
and compressed again from the same input to the same payload, so a change of format or numerics that was not
meant cannot pass unseen."""

from pathlib import Path

import numpy as np
import pytest

from acncodec import codec, modelfile
from acncodec.archive import parse
from acncodec.data import ImageSet

GOLDEN = Path(__file__).resolve().parent / "golden"
KINDS = ["binary", "levels17", "grey", "rgb", "folder"]


def golden(kind):
    model = modelfile.load(GOLDEN / f"{kind}.acn")
    stored = np.load(GOLDEN / f"{kind}-input.npz")
    names = [str(s) for s in stored["names"]] or None
    images = ImageSet(stored["images"], model.spec.levels, names, kind)
    return model, images, (GOLDEN / f"{kind}.acnz").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_golden_archive_decodes_to_exact_pixels(kind):
    model, images, blob = golden(kind)
    out, header = codec.decompress(blob, model, progress=False)
    if header.order == "original":
        assert np.array_equal(out.images, images.images) and out.names == images.names
    else:
        pairs = lambda s: sorted(zip(s.names or [""] * len(s), (im.tobytes() for im in s.images)))
        assert pairs(out) == pairs(images)


@pytest.mark.parametrize("kind", KINDS)
def test_compressing_the_same_input_gives_the_same_payload(kind):
    model, images, blob = golden(kind)
    header = parse(blob).header
    first, _ = codec.compress(images, model, order=header.order, chains=header.chains, progress=False,
                              estimate=False)
    second, _ = codec.compress(images, model, order=header.order, chains=header.chains, progress=False,
                               estimate=False)
    assert first == second
    assert np.array_equal(parse(first).payload, parse(blob).payload)
