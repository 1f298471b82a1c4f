"""The command line as a gzip/xz/zstd user types it (issue 14, points 5, 7 and 8): - for standard input and
output, -o, default output names, -q and -v, help for every option, no folders made up, a fast --version,
and a report in plain words."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from acncodec import modelfile
from acncodec.cli import main
from helpers import SPECS, random_images, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    spec = SPECS["grey"]
    modelfile.save(tiny_model(spec), root / "m.acn")
    data = random_images(spec, 30).images[..., 0]
    np.save(root / "a.npy", data)
    return root, data


def invoke(args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def test_dash_is_standard_input_and_output(setup, tmp_path):
    root, data = setup
    model = root / "m.acn"
    r = invoke(["compress", "-", "-", "-m", model, "--order", "original"], input=(root / "a.npy").read_bytes())
    assert r.exit_code == 0, r.stderr
    archive = r.stdout_bytes
    assert archive[:4] != b"\x93NUM" and len(archive) > 100 and not Path("-").exists()
    assert "bits/dim" in r.stderr                     # the report goes to stderr when stdout carries data
    (tmp_path / "a.acnz").write_bytes(archive)
    r = invoke(["decompress", tmp_path / "a.acnz", "-", "-m", model])
    assert r.exit_code == 0, r.stderr
    assert "restored 30 images" in r.stderr and "restored" not in r.stdout_bytes.decode("latin-1")
    restored = np.load(__import__("io").BytesIO(r.stdout_bytes))
    assert np.array_equal(restored, data)
    r = invoke(["decompress", "-", "-o", tmp_path / "b.npy", "-m", model], input=archive)
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(np.load(tmp_path / "b.npy"), data)


def test_default_output_names_and_dash_o(setup, tmp_path):
    root, data = setup
    np.save(tmp_path / "s.npy", data)
    r = invoke(["compress", tmp_path / "s.npy", "-m", root / "m.acn", "--order", "original", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.acnz").is_file() and r.output == ""          # -q: nothing but errors
    r = invoke(["decompress", tmp_path / "s.acnz", "-m", root / "m.acn"])
    assert r.exit_code == 1 and "s.npy already exists" in r.output       # the default name is the input's
    (tmp_path / "s.npy").unlink()
    r = invoke(["decompress", tmp_path / "s.acnz", "-m", root / "m.acn", "-q"])
    assert r.exit_code == 0 and np.array_equal(np.load(tmp_path / "s.npy"), data)
    r = invoke(["compress", tmp_path / "s.npy", "-o", tmp_path / "t.acnz", "-m", root / "m.acn", "-v"])
    assert r.exit_code == 0 and (tmp_path / "t.acnz").is_file()
    assert "sections:" in r.stdout and "speed:" in r.stdout               # -v: more than the default
    assert "sections:" not in invoke(["compress", tmp_path / "s.npy", "-o", tmp_path / "u.acnz",
                                      "-m", root / "m.acn"]).stdout


def test_missing_output_folder_is_an_error_and_nothing_is_created(setup, tmp_path):
    root, _ = setup
    for args in (["compress", root / "a.npy", tmp_path / "no" / "x.acnz", "-m", root / "m.acn"],
                 ["compress", root / "a.npy", tmp_path / "y.acnz", "-m", root / "m.acn",
                  "--json", tmp_path / "no" / "r.json"],
                 ["train", root / "a.npy", "-o", tmp_path / "no" / "m.acn", "--steps", "1"]):
        r = invoke(args)
        assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
        assert not (tmp_path / "no").exists() and not (tmp_path / "y.acnz").exists()


def test_every_option_has_help():
    missing = []
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, missing


def test_version_is_fast_and_imports_no_heavy_library():
    probe = ("import sys, time; t = time.perf_counter(); from acncodec.cli import main\n"
             "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'faiss', 'sklearn', 'PIL', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    import acncodec
    assert done.stdout.splitlines()[0].endswith(acncodec.__version__)


def test_report_words_and_info(setup, tmp_path):
    root, _ = setup
    folder_like = ["compress", root / "a.npy", tmp_path / "o.acnz", "-m", root / "m.acn", "--order", "original",
                   "--chains", "1", "-v"]
    r = invoke(folder_like)
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert "initial bits" not in text and "1 chains" not in text and "1 chain " in text
    assert "tour" not in text.replace("--order", "")                   # no tour timing in original order
    assert "model's estimate" in text and "times the estimate" in text
    assert "xz -9 on the same pixels" in text
    r = invoke(["info", tmp_path / "o.acnz"])
    assert r.exit_code == 0 and not r.stdout.lstrip().startswith("{")
    assert "holds 30 images" in r.stdout and "order: original" in r.stdout and "sections:" in r.stdout
    r = invoke(["info", tmp_path / "o.acnz", "--json"])
    assert json.loads(r.stdout)["header"]["n"] == 30


def test_report_warns_when_xz_does_better(setup, tmp_path):
    root, _ = setup
    flat = np.zeros((30, 4, 5), dtype=np.uint8)   # xz stores these in almost nothing; an untrained model cannot
    np.save(tmp_path / "flat.npy", flat)
    r = invoke(["compress", tmp_path / "flat.npy", tmp_path / "f.acnz", "-m", root / "m.acn", "--levels", "256"])
    assert r.exit_code == 0, r.output
    assert "warning: the archive is" in r.stderr and "larger than xz -9" in r.stderr


def test_version_timing_is_recorded_below_one_second():
    """Not a benchmark: a regression guard (the eager imports took 8 s here)."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "acncodec.cli", "--version"], capture_output=True, check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        runs.append(time.perf_counter() - started)
    assert sorted(runs)[1] < 2.0, runs
