"""Sharded archives: round trips in every order mode, bytes that do not depend on the workers, partial
decoding, a hostile index, and workers killed mid-run (local processes and a real local Ray cluster)."""

import dataclasses
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from acncodec import archive as stream_archive, codec, sharding, shards
from acncodec.data import ImageSet
from acncodec.errors import AcnError
from helpers import SPECS, random_images, tiny_exact_model


def run_cli(*args):
    """The command line in a fresh process (workers are spawned from it, as they are for a user)."""
    return subprocess.run([sys.executable, "-m", "acncodec.cli", *args], capture_output=True, text=True,
                          timeout=600)

ORDERS = ("tour", "original", "set", "associative")


def by_name(images: ImageSet) -> dict:
    return {name: images.images[i] for i, name in enumerate(images.names)}


def assert_same_images(decoded: ImageSet, original: ImageSet) -> None:
    """Every decoded pixel against the image of the same name."""
    assert sorted(decoded.names) == sorted(original.names)
    want = by_name(original)
    for i, name in enumerate(decoded.names):
        assert np.array_equal(decoded.images[i], want[name]), name


@pytest.mark.parametrize("kind", ["binary", "grey"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("count", [2, 7])
def test_sharded_round_trip(kind, order, count):
    model = tiny_exact_model(SPECS[kind])
    images = random_images(SPECS[kind], 23, names=True)
    blob, report = sharding.compress(images, model, order=order, shards=count, progress=False)
    parsed = stream_archive.parse(blob)
    assert isinstance(parsed, shards.ShardedArchive) and parsed.header.shards == count
    assert report["shards"] == count and sum(report["shard_images"]) == 23 and report["bytes"] == len(blob)
    decoded, header = sharding.restore(parsed, model, progress=False)
    assert header.order == order
    assert_same_images(decoded, images)
    if order == "original":   # consecutive pieces of the input, each in its own order
        assert decoded.names == images.names


@pytest.mark.parametrize("order", ORDERS)
def test_a_shard_is_the_one_stream_archive_of_its_images(order):
    """Rate: sharding adds the index and nothing else. Each shard is byte for byte what a one-stream compress
    of its images writes (without names and versions), and the archive is the index plus the shards."""
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 19)
    blob, report = sharding.compress(images, model, order=order, shards=3, progress=False, estimate=False)
    parsed = stream_archive.parse(blob)
    _, pieces, _ = sharding.plan(codec.match_model(images, model), model, order, 3)
    index = sum(v for k, v in report["section_bytes"].items() if k != "shards")
    assert index == report["bytes"] - sum(e.size for e in parsed.entries)
    for i, piece in enumerate(pieces):
        part = ImageSet(images.images[piece], images.levels, None, "test")
        alone, _, _ = codec.compress_archive(part, model, order, progress=False, estimate=False, versions={})
        assert parsed.shard_bytes(i) == alone.to_bytes()
        # and that archive's rate is what the one-stream rate tests hold it to: bits written ~ -log2 P
        assert parsed.shard(i, "t").header.n == len(piece)


def test_one_shard_is_todays_archive():
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 12)
    blob, _ = sharding.compress(images, model, order="tour", shards=1, progress=False, estimate=False)
    same, _ = codec.compress(images, model, order="tour", progress=False, estimate=False)
    assert blob == same
    assert not isinstance(stream_archive.parse(blob), shards.ShardedArchive)


def test_default_shard_count():
    assert sharding.shard_count(10_000) == 1
    assert sharding.shard_count(10_001) == 2
    assert sharding.shard_count(60_000) == 6
    assert sharding.shard_count(100, shard_images=30) == 4
    assert sharding.shard_count(5, shards=9) == 5
    with pytest.raises(AcnError, match="not both"):
        sharding.shard_count(10, shards=2, shard_images=3)


def test_workers_do_not_change_the_bytes():
    model = tiny_exact_model(SPECS["grey"])
    images = random_images(SPECS["grey"], 21, names=True)
    one, _ = sharding.compress(images, model, order="tour", shards=7, workers=1, progress=False, estimate=False)
    two, report = sharding.compress(images, model, order="tour", shards=7, workers=2, progress=False,
                                    estimate=False)
    assert report["engine"] == "2 worker processes"
    assert one == two
    decoded, _ = sharding.restore(stream_archive.parse(two), model, workers=2, progress=False)
    assert_same_images(decoded, images)


def test_partial_decoding_decodes_only_the_shards_asked_for(monkeypatch):
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 20, names=True)
    blob, _ = sharding.compress(images, model, order="tour", shards=4, progress=False, estimate=False)
    parsed = stream_archive.parse(blob)
    decoded_shards = []
    real = codec.decompress

    def spy(data, *args, **kwargs):
        decoded_shards.append(data.header.n)
        return real(data, *args, **kwargs)
    monkeypatch.setattr(codec, "decompress", spy)
    whole, _ = sharding.restore(parsed, model, progress=False)
    decoded_shards.clear()
    part, _ = sharding.restore(parsed, model, shards=[2], progress=False)
    assert decoded_shards == [5]
    assert part.names == whole.names[10:15]
    assert all(np.array_equal(part.images[k], whole.images[10 + k]) for k in range(5))
    decoded_shards.clear()
    picked, _ = sharding.restore(parsed, model, numbers=np.array([1, 17]), names=[whole.names[6]], progress=False)
    assert sorted(decoded_shards) == [5, 5, 5]       # shards 0, 1 and 3
    assert picked.names == [whole.names[i] for i in (1, 6, 17)]
    assert np.array_equal(picked.images, whole.images[[1, 6, 17]])
    with pytest.raises(AcnError, match="no image named"):
        sharding.restore(parsed, model, names=["nope.png"], progress=False)
    with pytest.raises(AcnError, match="holds images 0..19"):
        sharding.restore(parsed, model, numbers=np.array([20]), progress=False)


def test_parse_numbers():
    assert list(sharding.parse_numbers("0-2, 7,5", 10, "a")) == [0, 1, 2, 5, 7]
    for bad in ("3-1", "x", "10", "-1"):
        with pytest.raises(AcnError):
            sharding.parse_numbers(bad, 10, "a")


# ------------------------------------------------------------------------------------------ a hostile index
def sharded_blob():
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 9, names=True)
    blob, _ = sharding.compress(images, model, order="original", shards=3, progress=False, estimate=False)
    return model, blob


def index_end(blob: bytes) -> int:
    parsed = stream_archive.parse(blob)
    return parsed.entries[0].start - shards.DIGEST


def reseal_index(blob: bytes, index: bytes) -> bytes:
    """Replace everything up to the index digest, and seal it again as an attacker would."""
    end = index_end(blob)
    return index + hashlib.sha256(index).digest() + blob[end + shards.DIGEST:]


def test_damage_anywhere_is_refused_in_one_line():
    model, blob = sharded_blob()
    end = index_end(blob)
    for at in (10, end - 5, end + 3, len(blob) - 40, len(blob) - 1):
        bad = bytearray(blob)
        bad[at] ^= 0x10
        with pytest.raises(AcnError, match="damaged|checksum"):
            sharding.restore(stream_archive.parse(bytes(bad)), model, progress=False)
    for cut in (len(blob) - 1, end + 10, end - 1, 20):
        with pytest.raises(AcnError):
            stream_archive.parse(blob[:cut])


def test_a_crafted_index_is_refused():
    model, blob = sharded_blob()
    end = index_end(blob)
    index = blob[:end]
    count_at = end - 3 * shards.ENTRY.size - 4
    table = [shards.ENTRY.unpack_from(index, count_at + 4 + i * shards.ENTRY.size) for i in range(3)]

    def with_table(rows, count=3):
        return reseal_index(blob, index[:count_at] + struct.pack("<I", count)
                            + b"".join(shards.ENTRY.pack(*r) for r in rows))
    cases = {
        "images 0..": with_table([(0,) + table[0][1:]] + table[1:]),
        "hold 10 images": with_table([(4,) + table[0][1:]] + table[1:]),
        "lengths do not match": with_table([(table[0][0], table[0][1] + 4, table[0][2])] + table[1:]),
        "index lists 2 shards": with_table(table[:2], count=2),
    }
    # Two shards swapped in the table and the body: each still sound, but the images no longer in the order
    # the checksum of the whole names.
    body = [blob[e.start:e.start + e.size] for e in stream_archive.parse(blob).entries]
    swapped = index[:count_at] + struct.pack("<I", 3) + b"".join(shards.ENTRY.pack(*table[i]) for i in (1, 0, 2))
    swapped = swapped + hashlib.sha256(swapped).digest() + body[1] + body[0] + body[2]
    for match, bad in cases.items():
        with pytest.raises(AcnError, match=match.split()[0] if match != "images 0.." else "invalid"):
            stream_archive.parse(bad)
    with pytest.raises(AcnError, match="altered and re-sealed"):
        sharding.restore(stream_archive.parse(swapped), model, progress=False)
    # A shard from another archive, its digest put in the table: it does not agree with the index header.
    other_model = tiny_exact_model(SPECS["binary"], seed=1)
    other, _ = codec.compress(random_images(SPECS["binary"], 3), other_model, order="original", progress=False,
                              estimate=False)
    foreign = index[:count_at] + struct.pack("<I", 3) + shards.ENTRY.pack(3, len(other), hashlib.sha256(other)
                                                                          .digest()) \
        + b"".join(shards.ENTRY.pack(*r) for r in table[1:])
    foreign = foreign + hashlib.sha256(foreign).digest() + other + body[1] + body[2]
    with pytest.raises(AcnError, match="does not agree"):
        sharding.restore(stream_archive.parse(foreign), model, progress=False)


def test_the_wrong_model_is_refused():
    _, blob = sharded_blob()
    with pytest.raises(AcnError, match="made with model"):
        sharding.restore(stream_archive.parse(blob), tiny_exact_model(SPECS["binary"], seed=1), progress=False)


# ------------------------------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from acncodec import modelfile
    path = tmp_path_factory.mktemp("model") / "tiny.acn"
    modelfile.save(tiny_exact_model(SPECS["grey"]), path)
    return path


def save_folder(images: ImageSet, folder: Path) -> None:
    from acncodec.data import export_png
    export_png(images, folder, names=images.names)


def test_cli_sharded_round_trip_and_partial_restore(tmp_path, model_file):
    images = random_images(SPECS["grey"], 30, names=True)
    save_folder(images, tmp_path / "in")
    r = run_cli("compress", str(tmp_path / "in"), "-o", str(tmp_path / "a.acnz"), "-m", str(model_file),
                "--shards", "7", "--workers", "2", "--order", "tour", "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("info", str(tmp_path / "a.acnz"))
    assert "7 shards of 4 to 5 images" in r.stdout
    r = run_cli("decompress", str(tmp_path / "a.acnz"), "-o", str(tmp_path / "out"), "-m", str(model_file),
                "--workers", "2")
    assert r.returncode == 0, r.stderr
    from acncodec.data import load
    back = load(str(tmp_path / "out"))
    assert_same_images(back, load(str(tmp_path / "in")))
    r = run_cli("decompress", str(tmp_path / "a.acnz"), "-o", str(tmp_path / "one"), "-m", str(model_file),
                "--shard", "3", "--name", images.names[0], "-q")
    assert r.returncode == 0, r.stderr
    parsed = stream_archive.parse((tmp_path / "a.acnz").read_bytes())
    expect = set(parsed.names[parsed.first_image(3):parsed.first_image(4)]) | {images.names[0]}
    assert {p.name for p in (tmp_path / "one").iterdir()} == expect
    r = run_cli("decompress", str(tmp_path / "a.acnz"), "-o", str(tmp_path / "bad"), "-m", str(model_file),
                "--shard", "7")
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("error:") and "shards 0..6" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_array_selection(tmp_path, model_file):
    images = random_images(SPECS["grey"], 14)
    np.save(tmp_path / "x.npy", images.images[..., 0])
    r = run_cli("compress", str(tmp_path / "x.npy"), "-m", str(model_file), "--shards", "2", "--order",
                "original", "-q", "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("decompress", str(tmp_path / "x.acnz"), "-o", str(tmp_path / "sel.npy"), "-m", str(model_file),
                "--images", "2-4,11", "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(tmp_path / "sel.npy"), images.images[[2, 3, 4, 11], ..., 0])


# ------------------------------------------------------------------------------------------ killed workers
def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_one_while_running(proc, seconds: float, workers, settle: float = 0.0) -> int | None:
    """SIGKILL the first of `workers()` seen while `proc` runs (None if none was seen in time)."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        seen = workers()
        if seen:
            time.sleep(settle)
            try:
                os.kill(seen[0], signal.SIGKILL)
                return seen[0]
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return None


def slow_case(tmp_path, model_file, n=4000):
    images = random_images(SPECS["grey"], n)
    np.save(tmp_path / "x.npy", images.images[..., 0])
    return images


def test_a_killed_local_worker_is_replaced(tmp_path, model_file):
    images = slow_case(tmp_path, model_file)
    proc = subprocess.Popen([sys.executable, "-m", "acncodec.cli", "compress", str(tmp_path / "x.npy"), "-m",
                             str(model_file), "--shards", "8", "--workers", "2", "--order", "original",
                             "--no-estimate", "--json", str(tmp_path / "r.json"), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = kill_one_while_running(proc, 60, settle=0.5,        # settle: let it start on a shard
                                    workers=lambda: [p for p in children(proc.pid) if "spawn_main" in cmdline(p)])
    out, err = proc.communicate(timeout=300)
    assert killed is not None, "the workers were not seen"
    assert proc.returncode == 0, err
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["worker_restarts"] >= 1
    back, _ = sharding.restore(stream_archive.parse((tmp_path / "x.acnz").read_bytes()),
                               __import__("acncodec.modelfile", fromlist=["load"]).load(model_file),
                               progress=False)
    assert np.array_equal(back.images, images.images)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    temp = tempfile.mkdtemp(prefix="ray")   # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    started = subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                              str(port), "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", temp,
                              "--disable-usage-stats"], capture_output=True, text=True, env=env, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_cluster_codes_the_shards_and_survives_a_killed_worker(tmp_path, model_file, ray_cluster):
    images = slow_case(tmp_path, model_file)
    proc = subprocess.Popen([sys.executable, "-m", "acncodec.cli", "compress", str(tmp_path / "x.npy"), "-m",
                             str(model_file), "--shards", "8", "--cluster", ray_cluster, "--order", "original",
                             "--no-estimate", "--json", str(tmp_path / "r.json"), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = kill_one_while_running(proc, 120, workers=lambda: [int(p) for p in subprocess.run(
        ["pgrep", "-f", "ray::_run_ray"], capture_output=True, text=True).stdout.split()])
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "no Ray worker was seen running a shard"
    assert proc.returncode == 0, err
    import json
    assert json.loads((tmp_path / "r.json").read_text())["engine"].startswith("the Ray cluster")
    r = run_cli("decompress", str(tmp_path / "x.acnz"), "-o", str(tmp_path / "y.npy"), "-m", str(model_file),
                "--cluster", ray_cluster, "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(tmp_path / "y.npy"), images.images[..., 0])


def test_cli_refuses_a_damaged_sharded_archive_in_one_line(tmp_path, model_file):
    images = random_images(SPECS["grey"], 12)
    blob, _ = sharding.compress(images, tiny_exact_model(SPECS["grey"]), order="original", shards=3,
                                progress=False, estimate=False)
    end = index_end(blob)
    flipped = bytearray(blob)
    flipped[end + 40] ^= 1                   # inside shard 0: caught by its digest in the table
    for name, bad in {"cut": blob[:len(blob) - 7], "flip": bytes(flipped), "index": blob[:end - 3]}.items():
        (tmp_path / f"{name}.acnz").write_bytes(bad)
        r = run_cli("decompress", str(tmp_path / f"{name}.acnz"), "-o", str(tmp_path / f"{name}.npy"), "-m",
                    str(model_file))
        lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / f"{name}.npy").exists()


def test_an_unreachable_cluster_is_refused_at_once():
    pytest.importorskip("ray")
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 6)
    started = time.perf_counter()
    with pytest.raises(AcnError, match="cannot reach a Ray cluster at 127.0.0.1:"):
        sharding.compress(images, model, shards=2, cluster=f"127.0.0.1:{free_port()}", progress=False)
    with pytest.raises(AcnError, match="HOST:PORT"):
        sharding.compress(images, model, shards=2, cluster="nonsense", progress=False)
    assert time.perf_counter() - started < 30
