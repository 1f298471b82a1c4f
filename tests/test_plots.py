"""Figures a reader must not misread (issue 14, point 9): the model's size beside the archive, data the model
was trained on said on the plot, and a neighbours grid that says what its rows are."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from acncodec import modelfile, represent
from acncodec.cli import main
from acncodec.data import DataSpec
from helpers import random_images, tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_replot_adds_archive_plus_model_and_the_training_data_caveat(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import benchmark
    for name in ("digits", "fashion-mnist"):
        shutil.copy(ROOT / "bench" / "results" / f"{name}.json", tmp_path)
    # A record without the model's size gets the size of the model file it names (the shipped one here).
    record = json.loads((tmp_path / "digits.json").read_text())
    record["model"].pop("file_bytes", None)
    (tmp_path / "digits.json").write_text(json.dumps(record))
    assert benchmark.main(["--replot", "--out", str(tmp_path)]) == 0
    digits = json.loads((tmp_path / "digits.json").read_text())
    size = digits["model"]["file_bytes"]
    assert size == (ROOT / "acncodec" / "reference" / "digits.acn").stat().st_size
    tour = digits["acncodec"]["tour"]
    assert tour["bits_per_dim_with_model"] == 8 * (tour["bytes"] + size) / (digits["n"] * 64)
    md = (tmp_path / "digits.md").read_text()
    assert "trained on these same images" in md and "tour order + model file" in md
    assert "trained on these same images" not in (tmp_path / "fashion-mnist.md").read_text()
    for plot in digits["plots"]:
        with Image.open(tmp_path / plot) as im:
            assert im.format == "PNG" and im.width > 300
    sys.modules.pop("benchmark", None)


def test_neighbours_grid_labels_its_rows(tmp_path):
    spec = DataSpec(5, 6, 1, 2)
    modelfile.save(tiny_model(spec), tmp_path / "m.acn")
    np.save(tmp_path / "d.npy", random_images(spec, 20).images[..., 0])
    out = tmp_path / "n.png"
    result = CliRunner().invoke(main, ["neighbours", str(tmp_path / "m.acn"), str(tmp_path / "d.npy"), "-o",
                                       str(out), "--queries", "0,4", "-k", "3", "--scale", "8"])
    assert result.exit_code == 0, result.output
    plain = represent.grid_image([np.zeros((4, 5, 6, 1), np.uint8)] * 4, 2, 8)
    with Image.open(out) as im:
        labelled = np.asarray(im)
    assert labelled.shape[1] > plain.shape[1] + 40 and labelled.shape[0] > plain.shape[0]   # margin and header
    margin = labelled[-plain.shape[0]:, :labelled.shape[1] - plain.shape[1]]
    assert (margin == 0).any() and (margin == 255).any()   # text drawn in the margin
    rows_with_ink = np.flatnonzero((margin == 0).any(axis=1))
    assert len(rows_with_ink) and rows_with_ink.max() - rows_with_ink.min() > 2 * plain.shape[0] // 4  # every row
