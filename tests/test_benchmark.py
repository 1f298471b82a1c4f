"""bench/benchmark.py on a few digits: every record, table and plot it promises, with verified round trips."""

import json
import sys
from pathlib import Path

from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_benchmark_writes_verified_records_tables_and_plots(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import benchmark
    assert benchmark.main(["--datasets", "digits", "--count", "30", "--out", str(tmp_path), "--no-speed"]) == 0
    r = json.loads((tmp_path / "digits.json").read_text())
    assert r["n"] == 30 and r["model"]["name"] == "digits"
    assert set(r["acncodec"]) == {"tour", "original", "set", "associative"}   # every order mode coded
    for order in r["acncodec"]:
        c = r["acncodec"][order]
        assert c["verified_images"] == 30 and c["bytes"] > 0
        assert abs(c["bits_per_dim"] - 8 * c["bytes"] / (30 * 64)) < 1e-9
    assert all(c.get("verified") for c in r["classical"].values() if "skipped" not in c)
    assert {"gzip", "bz2", "xz", "png"} <= {k for k, c in r["classical"].items() if c.get("verified")}
    table = r["estimate_nats_per_image"]
    assert abs(table["ordered"] - table["reconstruction"] - table["kl_tour"]) < 1e-6
    md = (tmp_path / "digits.md").read_text()
    assert "acncodec, tour order" in md and "| gzip |" in md
    assert "acncodec, set order" in md and "| associative |" in md and "log2(N!)/N" in md
    for plot in r["plots"]:
        with Image.open(tmp_path / plot) as im:
            assert im.format == "PNG" and im.width > 100
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["datasets"]["digits"]["n"] == 30 and summary["runs"][-1]["seconds"] > 0
    sys.modules.pop("benchmark", None)


def test_benchmark_refuses_unknown_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import benchmark
    import pytest
    with pytest.raises(SystemExit) as info:
        benchmark.main(["--datasets", "cifar", "--out", str(tmp_path)])
    assert info.value.code == 2 and "unknown datasets" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
