"""A sharded compress that stops resumes from its checkpoint folder: only the missing shards are coded, the
archive is byte for byte an uninterrupted run's, a folder of another plan is refused, damaged or foreign shard
files are coded again, and only the files the checkpoint wrote are removed."""

import json
import subprocess
import sys

import numpy as np
import pytest

from acncodec import archive as stream_archive, engines, sharding
from acncodec.errors import AcnError
from acncodec.resume import PIECES, PLAN
from helpers import SPECS, random_images, tiny_exact_model

SHARDS = 4


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def setup():
    model = tiny_exact_model(SPECS["binary"])
    images = random_images(SPECS["binary"], 22, names=True)
    whole, _ = sharding.compress(images, model, order="tour", shards=SHARDS, progress=False, estimate=False)
    return model, images, whole


def counting(monkeypatch, stop_after: int | None = None) -> list:
    """Count the shards coded (and stop the run, as a kill would, after `stop_after` of them)."""
    calls, real = [], engines.TASKS["compress"]

    def task(model, job):
        if stop_after is not None and len(calls) == stop_after:
            raise Stop
        calls.append(job["source"])
        return real(model, job)
    monkeypatch.setitem(engines.TASKS, "compress", task)
    return calls


def compress(setup, folder, **kw):
    model, images, _ = setup
    return sharding.compress(images, model, order="tour", shards=SHARDS, progress=False, estimate=False,
                             checkpoint=folder, **kw)


def stop_after_two(setup, folder, monkeypatch):
    counting(monkeypatch, stop_after=2)
    with pytest.raises(Stop):
        compress(setup, folder)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == sorted([PLAN, PIECES, "shard-000000.npz",
                                                               "shard-000001.npz"])


def test_a_stopped_run_resumes_with_the_missing_shards_and_writes_the_same_archive(setup, tmp_path,
                                                                                   monkeypatch):
    folder = tmp_path / "ckpt"
    stop_after_two(setup, folder, monkeypatch)
    calls = counting(monkeypatch)
    monkeypatch.setattr(sharding, "plan", lambda *a: pytest.fail("a resumed run planned again"))
    blob, report = compress(setup, folder)
    assert len(calls) == SHARDS - 2 and report["shards_resumed"] == 2
    assert blob == setup[2]                     # what one uninterrupted run writes
    assert not folder.exists()                  # the checkpoint made the folder, and removed it when done
    decoded, _ = sharding.restore(stream_archive.parse(blob), setup[0], progress=False)
    want = dict(zip(setup[1].names, setup[1].images))
    assert all(np.array_equal(im, want[name]) for name, im in zip(decoded.names, decoded.images))


def test_a_folder_of_another_plan_is_refused_and_left_alone(setup, tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    stop_after_two(setup, folder, monkeypatch)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(AcnError, match="another compress"):
        compress(setup, folder, chains=2)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_damaged_or_foreign_shard_files_are_coded_again(setup, tmp_path, monkeypatch, damage):
    folder = tmp_path / "ckpt"
    stop_after_two(setup, folder, monkeypatch)
    a, b = folder / "shard-000000.npz", folder / "shard-000001.npz"
    if damage == "truncated":
        a.write_bytes(a.read_bytes()[:100])
        recoded = 1
    else:   # each file holds a valid shard, of the other shard's images
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        recoded = 2
    calls = counting(monkeypatch)
    blob, report = compress(setup, folder)
    assert len(calls) == SHARDS - 2 + recoded and report["shards_resumed"] == 2 - recoded
    assert blob == setup[2]


def test_only_the_checkpoints_own_files_are_removed(setup, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    blob, _ = compress(setup, folder)
    assert blob == setup[2]
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_damaged_plan_file_is_refused(setup, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / PLAN).write_text("{not json")
    with pytest.raises(AcnError, match="not a checkpoint plan"):
        compress(setup, folder)
    assert (folder / PLAN).read_text() == "{not json"


@pytest.mark.parametrize("damage", ["plan.npz cut", "plan.npz other cut"])
def test_a_damaged_stored_plan_is_refused(setup, tmp_path, monkeypatch, damage):
    folder = tmp_path / "ckpt"
    stop_after_two(setup, folder, monkeypatch)
    pieces = folder / PIECES
    if damage == "plan.npz cut":
        pieces.write_bytes(pieces.read_bytes()[:50])
    else:   # a readable plan whose cut is not the one plan.json records
        with np.load(pieces) as f:
            positions, ends = f["positions"], f["ends"]
        np.savez(pieces, positions=positions[::-1], ends=ends)
    with pytest.raises(AcnError, match="plan is damaged"):
        compress(setup, folder)
    assert (folder / "shard-000000.npz").exists()


def test_cli_checkpoint_round_trip(tmp_path):
    from acncodec import modelfile
    model_path = tmp_path / "tiny.acn"
    modelfile.save(tiny_exact_model(SPECS["binary"]), model_path)
    images = random_images(SPECS["binary"], 15)
    np.save(tmp_path / "x.npy", images.images)
    run = lambda *a: subprocess.run([sys.executable, "-m", "acncodec.cli", *a], capture_output=True, text=True,
                                    timeout=600)
    r = run("compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.acnz"), "-m", str(model_path),
            "--shards", "3", "--workers", "1", "--checkpoint", str(tmp_path / "ck"), "--json",
            str(tmp_path / "r.json"), "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["shards_resumed"] == 0
    assert not (tmp_path / "ck").exists()
    r = run("decompress", str(tmp_path / "x.acnz"), "-o", str(tmp_path / "y.npy"), "-m", str(model_path), "-q")
    assert r.returncode == 0, r.stderr
    back = np.load(tmp_path / "y.npy")
    key = lambda a: sorted(im.tobytes() for im in a)
    assert key(back) == key(images.images)
