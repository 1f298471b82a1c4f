"""Bad archives, bad inputs and interrupted runs: a clear one-line error, a non-zero exit, nothing left behind."""

import dataclasses
import fcntl
import functools
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from acncodec import codec, modelfile
from acncodec.cli import main
from helpers import SPECS, random_images, tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    spec = SPECS["binary"]
    model = tiny_model(spec)
    modelfile.save(model, root / "m.acn")
    images = random_images(spec, 8, names=True)
    blob, _ = codec.compress(images, model, progress=False, estimate=False)
    other, _ = codec.compress(random_images(spec, 5, seed=9, names=True), model, progress=False, estimate=False)
    return root, images, blob, other


def run_cli(args):
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def one_line_error(code, output):
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output


def with_checksum(body: bytes) -> bytes:
    """Re-seal a damaged body, as a buggy writer would: the damage then has to be caught by the parser."""
    return body + hashlib.sha256(body).digest()


@functools.lru_cache(maxsize=8)
def sections(blob: bytes) -> list[bytes]:
    return list(codec.parse(blob).sections().values())


def mutate(blob: bytes, other: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded mutation: bit flips, a truncation, inserted or deleted bytes, two sections swapped, or the
    header section of another archive."""
    kind = rng.choice(["flip", "truncate", "insert", "delete", "swap", "foreign-header"])
    b = bytearray(blob)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 16)]
    elif kind == "swap":
        parts = sections(blob)
        i, j = rng.sample(range(len(parts)), 2)
        parts[i], parts[j] = parts[j], parts[i]
        b = bytearray(b"".join(parts))
    else:
        b = bytearray(sections(other)[0] + b"".join(sections(blob)[1:]))
    return kind, bytes(b)


def test_two_thousand_mutations_fail_cleanly(setup, tmp_path):
    """Every mutation of a sealed archive is refused quickly (under 1 s of CPU), with one line, leaving no
    output."""
    root, images, blob, other = setup
    rng = random.Random(1234)
    worst = worst_cpu = 0.0
    kinds = {}
    trial = 0
    while trial < 2000:
        kind, damaged = mutate(blob, other, rng)
        if damaged == blob:     # e.g. the same bit flipped twice
            continue
        trial += 1
        kinds[kind] = kinds.get(kind, 0) + 1
        path = tmp_path / "a.acnz"
        path.write_bytes(damaged)
        out = tmp_path / "out"
        t0, cpu0 = time.perf_counter(), time.process_time()
        code, output = run_cli(["decompress", str(path), str(out), "--model", str(root / "m.acn"), "-q"])
        worst = max(worst, time.perf_counter() - t0)
        worst_cpu = max(worst_cpu, time.process_time() - cpu0)
        one_line_error(code, output)
        assert os.listdir(tmp_path) == ["a.acnz"], (trial, kind, os.listdir(tmp_path))
    assert len(kinds) == 6 and min(kinds.values()) > 250
    assert worst < 10 and worst_cpu < 1, (worst, worst_cpu)


def test_resealed_mutations_never_give_wrong_data(setup, tmp_path):
    """Damage behind a valid checksum reaches the parser and the decoder: each archive either fails with one
    line and no output, or (harmless damage, e.g. to the recorded versions) restores exactly the images."""
    root, images, blob, other = setup
    rng = random.Random(99)
    outcomes = {"error": 0, "exact": 0}
    worst = worst_cpu = 0.0
    for trial in range(300):
        kind, damaged = mutate(blob, other, rng)
        path = tmp_path / "a.acnz"
        path.write_bytes(with_checksum(damaged[:-32]))
        out = tmp_path / "out"
        t0, cpu0 = time.perf_counter(), time.process_time()
        code, output = run_cli(["decompress", str(path), str(out), "--model", str(root / "m.acn"), "-q", "--force"])
        worst = max(worst, time.perf_counter() - t0)
        worst_cpu = max(worst_cpu, time.process_time() - cpu0)
        if code == 0:
            restored = {p.name: np.asarray(Image.open(p)) for p in out.iterdir()}
            assert sorted(restored) == sorted(images.names)
            for name, image in zip(images.names, images.images):
                assert np.array_equal(restored[name], image[..., 0].astype(bool)), name
            outcomes["exact"] += 1
        else:
            one_line_error(code, output)
            assert not out.exists()
            outcomes["error"] += 1
        if out.exists():
            shutil.rmtree(out)
    assert outcomes["error"] > 250
    assert worst < 10 and worst_cpu < 1, (worst, worst_cpu)


def test_wrong_or_missing_model(setup, tmp_path):
    root, images, blob, _ = setup
    (tmp_path / "a.acnz").write_bytes(blob)
    other = tiny_model(SPECS["binary"], seed=3)
    modelfile.save(other, tmp_path / "other.acn")
    code, output = run_cli(["decompress", str(tmp_path / "a.acnz"), str(tmp_path / "o"),
                            "--model", str(tmp_path / "other.acn")])
    one_line_error(code, output)
    assert other.hash[:12] in output and codec.parse(blob).header.model_hash[:12] in output
    code, output = run_cli(["decompress", str(tmp_path / "a.acnz"), str(tmp_path / "o"),
                            "--model", str(tmp_path / "missing.acn")])
    one_line_error(code, output)
    assert not (tmp_path / "o").exists()


def test_model_for_other_data(setup, tmp_path):
    root, *_ = setup
    folder = tmp_path / "rgb"
    folder.mkdir()
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(folder / "a.png")
    code, output = run_cli(["compress", str(folder), str(tmp_path / "x.acnz"), "--model", str(root / "m.acn")])
    one_line_error(code, output)
    assert "model is for" in output and not (tmp_path / "x.acnz").exists()


def write_binary(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((5, 6)) < 0.4).astype(np.uint8) * 255).convert("1").save(path)


def test_names_with_spaces_unicode_links_and_hidden_files_round_trip(setup, tmp_path):
    root, *_ = setup
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["a b.png", "ünïcødé 名前.png", "z.png"]
    for i, name in enumerate(names):
        write_binary(folder / name, i)
    write_binary(tmp_path / "elsewhere.png", 7)
    os.symlink(tmp_path / "elsewhere.png", folder / "link.png")
    write_binary(folder / ".hidden.png", 8)            # hidden files are skipped
    (folder / "sub").mkdir()                           # subfolders are skipped
    for order in codec.ORDERS:
        arch, out = tmp_path / f"{order}.acnz", tmp_path / f"out-{order}"
        assert run_cli(["compress", str(folder), str(arch), "--model", str(root / "m.acn"), "-q",
                        "--order", order])[0] == 0
        assert run_cli(["decompress", str(arch), str(out), "--model", str(root / "m.acn"), "-q"])[0] == 0
        assert sorted(p.name for p in out.iterdir()) == sorted(names + ["link.png"])
        code, output = run_cli(["compare", str(folder), str(out)])
        assert code == 0 and "identical: 4 images" in output


@pytest.mark.parametrize("case", ["empty", "mixed-size", "mixed-mode", "not-image", "broken-link", "rgba",
                                  "palette", "16-bit", "off-grid"])
def test_bad_folders(setup, tmp_path, case):
    root, *_ = setup
    folder = tmp_path / "in"
    folder.mkdir()
    if case != "empty":
        write_binary(folder / "a.png", 0)
    if case == "mixed-size":
        Image.new("1", (7, 5)).save(folder / "b.png")
    elif case == "mixed-mode":
        Image.new("L", (6, 5)).save(folder / "b.png")
    elif case == "not-image":
        (folder / "b.png").write_text("hello")
    elif case == "broken-link":
        os.symlink(tmp_path / "nowhere.png", folder / "b.png")
    elif case == "rgba":
        Image.new("RGBA", (6, 5)).save(folder / "b.png")
    elif case == "palette":
        Image.new("P", (6, 5)).save(folder / "b.png")
    elif case == "16-bit":
        Image.fromarray(np.full((5, 6), 40000, np.uint16)).save(folder / "b.png")
    elif case == "off-grid":   # 8-bit grey with a value no binary model can hold
        (folder / "a.png").unlink()
        Image.fromarray(np.full((5, 6), 255, np.uint8)).save(folder / "a.png")
        Image.fromarray(np.full((5, 6), 77, np.uint8)).save(folder / "b.png")
    code, output = run_cli(["compress", str(folder), str(tmp_path / "x.acnz"), "--model", str(root / "m.acn")])
    one_line_error(code, output)
    if case not in ("empty", "off-grid"):
        assert "b.png" in output
    if case == "off-grid":
        assert "grid" in output
    assert not (tmp_path / "x.acnz").exists()


def test_nothing_is_overwritten_without_force(setup, tmp_path):
    root, images, blob, _ = setup
    arch = tmp_path / "a.acnz"
    arch.write_bytes(b"precious")
    folder = tmp_path / "in"
    folder.mkdir()
    write_binary(folder / "a.png", 0)
    code, output = run_cli(["compress", str(folder), str(arch), "--model", str(root / "m.acn")])
    one_line_error(code, output)
    assert arch.read_bytes() == b"precious"
    assert run_cli(["compress", str(folder), str(arch), "--model", str(root / "m.acn"), "--force", "-q"])[0] == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "a.png").write_text("also mine")
    code, output = run_cli(["decompress", str(arch), str(out), "--model", str(root / "m.acn")])
    one_line_error(code, output)
    assert "a.png already exists" in output
    assert (out / "keep.txt").read_text() == "mine" and (out / "a.png").read_text() == "also mine"
    assert run_cli(["decompress", str(arch), str(out), "--model", str(root / "m.acn"), "--force", "-q"])[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "keep.txt"]     # nothing else is deleted
    assert (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def big_archive(setup):
    """An archive that takes several seconds to decode (one chain: one datum per round)."""
    root, *_ = setup
    model = modelfile.load(root / "m.acn")
    blob, _ = codec.compress(random_images(SPECS["binary"], 3000, names=True), model, chains=1, progress=False,
                             estimate=False)
    return blob


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_decompress_leaves_no_output(setup, big_archive, tmp_path, sig):
    root, *_ = setup
    arch = tmp_path / "big.acnz"
    arch.write_bytes(big_archive)
    out = tmp_path / "out"
    # A shell that starts jobs in the background makes them ignore SIGINT; give the child the default back.
    # stderr is a terminal, as for a user at a shell, so the progress bar shows when decoding has started.
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a width to draw the bar in
    proc = subprocess.Popen([sys.executable, "-m", "acncodec.cli", "decompress", str(arch), str(out),
                             "--model", str(root / "m.acn")], stderr=slave,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)

    def read_terminal() -> bytes:
        try:
            return os.read(master, 1024)
        except OSError:   # EIO: the child closed its end
            return b""

    seen = b""
    while b"decompress" not in seen:     # the progress bar: decoding has started
        chunk = read_terminal()
        assert chunk, "decompress ended before it could be interrupted"
        seen += chunk
    proc.send_signal(sig)
    proc.wait(timeout=60)
    err = seen
    while chunk := read_terminal():
        err += chunk
    os.close(master)
    assert proc.returncode != 0, f"decompress was not interrupted: {err.decode()[-300:]}"
    assert not out.exists()
    if sig != signal.SIGKILL:   # cleaned up: one line, and nothing but the archive in the folder
        assert err.decode().strip().splitlines()[-1].endswith("interrupted")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.acnz"]


def test_version_difference_is_warned_about(setup, tmp_path):
    root, images, blob, _ = setup
    archive = codec.parse(blob)
    archive.header = dataclasses.replace(archive.header, versions={**archive.header.versions, "torch": "0.0.0-other"})
    (tmp_path / "a.acnz").write_bytes(archive.to_bytes())
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.acnz"), str(tmp_path / "o"),
                                       "--model", str(root / "m.acn"), "-q"])
    assert result.exit_code == 0
    assert "warning: archive written with" in result.output and "0.0.0-other" in result.output


def test_outputs_get_the_mode_of_any_new_file(tmp_path):
    """Atomic writes go through a private temporary file; the finished output must not stay private."""
    from acncodec.fileio import atomic_write_bytes
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert os.stat(tmp_path / "b.bin").st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
