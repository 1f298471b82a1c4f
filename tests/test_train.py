"""Tests for training: neighbour search, unique neighbours, Algorithm 1 lowering the loss, exact resume, the model
file (round trip, corruption) and the `train` command."""

import functools
import io
import json
import re
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acncodec import modelfile
from acncodec.acn import ModelConfig
from acncodec.cli import main
from acncodec.data import from_array, load
from acncodec.errors import AcnError
from acncodec.knn import CodeMemory, UniqueNeighbours, nearest_others, pick_uniform
from acncodec.train import Trainer, TrainConfig, checkpoint_path, learning_rate_at, log_path
from acncodec.unconditional import fit_unconditional

trainmod = sys.modules["acncodec.train"]  # `acncodec.train` the attribute may be the function

TINY = ModelConfig(latent_dim=4, prior_components=3, prior_hidden=32, encoder_channels=8, encoder_hidden=32,
                   decoder_channels=8, decoder_layers=2)


# -- nearest neighbours --------------------------------------------------------------------------------------

def check_nearest_others(found, queries, ids, memory, k):
    """No datum is its own neighbour, neighbours are distinct, and they are the k nearest others by distance."""
    assert found.shape == (len(queries), k)
    d = ((queries[:, None, :].astype(np.float64) - memory[None].astype(np.float64)) ** 2).sum(-1)
    for row, (q_id, nb) in enumerate(zip(ids, found)):
        assert q_id not in nb, (row, q_id, nb)
        assert len(set(nb.tolist())) == k
        assert ((nb >= 0) & (nb < len(memory))).all()
        others = np.delete(d[row], q_id)
        np.testing.assert_allclose(np.sort(d[row, nb]), np.sort(others)[:k], rtol=1e-4, atol=1e-5)


def codes_with_duplicates(n=60, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    memory = rng.standard_normal((n, dim)).astype(np.float32)
    memory[10:17] = memory[3]   # 8 identical codes: more than k + 1, so the datum may miss the candidate list
    memory[41] = memory[40]     # a pair
    memory[50:53] = memory[55]  # copies *before* the original
    return memory


@pytest.mark.parametrize("k", [1, 5])
def test_nearest_others_with_duplicates_all_queries(k):
    memory = codes_with_duplicates()
    ids = np.arange(len(memory))  # 60 queries: faiss takes its BLAS path, where self-distances need not be 0
    found = nearest_others(memory, ids, memory, k)
    check_nearest_others(found, memory, ids, memory, k)
    # The duplicates are at distance 0, so they are the neighbours of their copies.
    assert set(found[40, :1]) == {41} and set(found[41, :1]) == {40}
    assert set(found[3]) <= {10, 11, 12, 13, 14, 15, 16}


@pytest.mark.parametrize("ids", [[9], [0], [4, 9, 0], [11, 2, 9, 5]])
def test_nearest_others_datum_not_first_among_ties(ids):
    rng = np.random.default_rng(1)
    memory = rng.standard_normal((12, 2)).astype(np.float32)
    memory[:10] = memory[0]  # ten identical codes; the datum may be the last of them
    ids = np.array(ids)
    found = nearest_others(memory[ids], ids, memory, 3)
    check_nearest_others(found, memory[ids], ids, memory, 3)


def test_nearest_others_subset_of_queries_and_limits():
    memory = codes_with_duplicates(seed=2)
    ids = np.array([55, 3, 52, 16, 40])
    check_nearest_others(nearest_others(memory[ids], ids, memory, 4), memory[ids], ids, memory, 4)
    small = memory[:6]
    everything = nearest_others(small, np.arange(6), small, 5)  # k = n - 1: all the others
    for row in range(6):
        assert sorted(everything[row]) == [i for i in range(6) if i != row]
    with pytest.raises(ValueError):
        nearest_others(small, np.arange(6), small, 6)


def test_code_memory_neighbours_exclude_self():
    rng = np.random.default_rng(3)
    mem = CodeMemory(80, 4, rng)
    assert mem.codes.shape == (80, 4) and mem.codes.dtype == np.float32
    ids = rng.permutation(80)[:32]
    codes = rng.standard_normal((32, 4)).astype(np.float32)
    codes[1] = codes[0]
    mem.write(ids, codes)
    mem.codes[5] = mem.codes[ids[0]]  # a third copy elsewhere in the memory
    assert np.array_equal(mem.codes[ids], codes)
    found = mem.neighbours(ids, 5)
    check_nearest_others(found, mem.codes[ids], ids, mem.codes, 5)
    assert ids[1] in found[0] and ids[0] in found[1] and 5 in found[0]


def test_neighbours_in_a_pool_are_the_nearest_pooled_others_on_either_memory():
    """With a pool, the K nearest are sought among the pooled codes only; a pooled datum is still not its own
    neighbour, and one outside the pool is searched for like any other. Both memories agree."""
    from acncodec.knn import DeviceCodeMemory, draw_pool
    rng = np.random.default_rng(5)
    host = CodeMemory(300, 4, np.random.default_rng(1))
    device = DeviceCodeMemory(300, 4, np.random.default_rng(1), "cpu")
    host.codes[7] = host.codes[100]     # a copy of a datum: a neighbour at distance 0 when pooled
    device.codes = host.codes
    pool = np.setdiff1d(np.union1d(draw_pool(300, 60, rng), [7, 100, 200]), [201, 299])
    ids = np.array([100, 200, 201, 7, 299])
    for mem in (host, device):
        found = mem.neighbours(ids, 4, pool)
        assert np.isin(found, pool).all()
        for q, nb in zip(ids, found):
            d = ((host.codes[pool] - host.codes[q]) ** 2).sum(1)
            d[pool == q] = np.inf
            assert q not in nb
            np.testing.assert_allclose(np.sort(((host.codes[nb] - host.codes[q]) ** 2).sum(1)), np.sort(d)[:4],
                                       rtol=1e-5)
        assert 7 in found[0]
    assert np.array_equal(np.sort(host.neighbours(ids, 4, pool), 1), np.sort(device.neighbours(ids, 4, pool), 1))
    assert draw_pool(300, None, rng) is None and draw_pool(300, 300, rng) is None
    drawn = draw_pool(300, 50, rng)
    assert len(np.unique(drawn)) == 50 and np.all(np.diff(drawn) > 0)


def test_a_pooled_run_trains_on_pooled_neighbours(tmp_path, digits300, monkeypatch):
    """--neighbour-pool: each step searches a fresh pool of that many codes, and a pool no larger than K is
    refused in one line."""
    import acncodec.knn as knn
    seen = []
    real = knn.draw_pool
    monkeypatch.setattr(knn, "draw_pool", lambda *a: seen.append(real(*a)) or seen[-1])
    config = TrainConfig(steps=3, batch_size=8, neighbour_pool=40, threads=1)
    trainer = Trainer(digits300, tmp_path / "m.acn", TINY, config, resume=False)
    for _ in range(3):
        trainer.train_step()
    torch.set_num_threads(1)
    assert len(seen) == 3 and all(len(p) == 40 for p in seen) and not np.array_equal(seen[0], seen[1])
    with pytest.raises(AcnError, match="pool"):
        TrainConfig(neighbours=5, neighbour_pool=5)


def test_pick_uniform_picks_every_candidate():
    rng = np.random.default_rng(4)
    cands = np.tile(np.arange(100, 105), (5000, 1))
    chosen = pick_uniform(cands, rng)
    counts = np.bincount(chosen - 100, minlength=5)
    assert counts.sum() == 5000 and (np.abs(counts - 1000) < 150).all()


def test_unique_neighbours_no_repeats_while_candidates_remain():
    rng = np.random.default_rng(5)
    size, k = 40, 5
    unique = UniqueNeighbours(size)
    for _ in range(2):  # two passes: new_pass must forget the first
        unique.new_pass()
        used = set()
        repeats = 0
        for _ in range(6):  # 6 batches of 8 rows = 48 picks > 40 codes, so fallbacks must happen
            cands = np.stack([rng.choice(np.delete(np.arange(size), i), k, replace=False)
                              for i in rng.integers(0, size, 8)])
            chosen = unique.pick(cands, rng)
            for row, pick in enumerate(chosen):
                assert pick in cands[row]
                free = [c for c in cands[row] if c not in used]
                if free:
                    assert pick == free[0], "the first unused candidate, nearest first"
                else:
                    repeats += 1
                used.add(int(pick))
            assert set(np.flatnonzero(unique.used)) == used
        assert repeats > 0  # the fallback branch was exercised


# -- training ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits300():
    return load("digits:300")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits300):
    """100 steps of Algorithm 1 on 300 digits; lr 3e-3 so a short run shows clear progress."""
    out = tmp_path_factory.mktemp("trained") / "digits.acn"
    config = TrainConfig(steps=100, batch_size=32, learning_rate=3e-3, threads=1, log_every=10)
    trainer = Trainer(digits300, out, TINY, config, resume=False)
    model = trainer.run(progress=False)
    torch.set_num_threads(1)
    return trainer, model, out


def test_training_lowers_the_loss(trained):
    trainer, model, out = trained
    log = [json.loads(line) for line in log_path(out).read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(10, 101, 10))
    for r in log:
        assert r["loss"] == pytest.approx(r["kl"] + r["recon"], rel=1e-5)
        assert r["kl"] > -1 and r["recon"] > 0
    first = np.mean([r["loss"] for r in log[:2]])
    last = np.mean([r["loss"] for r in log[-2:]])
    assert last < 0.85 * first, (first, last)
    assert np.mean([r["recon"] for r in log[-2:]]) < 0.85 * np.mean([r["recon"] for r in log[:2]])
    assert trainer.step == 100 and model.meta["steps"] == 100
    assert model.meta["epochs"] == pytest.approx(100 * 32 / 300, abs=0.01)


def test_saved_model_holds_the_averaged_weights(trained):
    trainer, model, out = trained
    loaded = modelfile.load(out)
    ema, raw = trainer.ema.state_dict(), trainer.net.state_dict()
    state = loaded.net.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert any(not torch.equal(state[k], raw[k]) for k in raw)


def test_save_load_identical_outputs(trained, digits300, tmp_path):
    _, model, out = trained
    loaded = modelfile.load(out)
    assert loaded.hash == model.hash
    assert modelfile.save(loaded, tmp_path / "again.acn") == model.hash
    assert loaded.spec == model.spec and loaded.config == model.config
    assert loaded.meta == json.loads(json.dumps(model.meta))  # stored as JSON: integer keys come back as str
    assert loaded.meta["train_source"] == digits300.source
    for name in ("weights", "means", "variances"):
        assert np.array_equal(getattr(loaded.unconditional, name), getattr(model.unconditional, name))
    x = trainmod.to_tensor(digits300.images[:16]).long()
    model.net.eval()
    with torch.no_grad():
        codes_a, codes_b = model.net.encoder(x), loaded.net.encoder(x)
        assert torch.equal(codes_a, codes_b)
        pa, pb = model.net.prior(codes_a), loaded.net.prior(codes_b)
        for t in ("log_weights", "means", "scales"):
            assert torch.equal(getattr(pa, t), getattr(pb, t))
        z = codes_a + torch.randn(codes_a.shape, generator=torch.Generator().manual_seed(0))
        assert torch.equal(model.net.decoder.logits(x, z), loaded.net.decoder.logits(x, z))
    # The hash covers the weights: one changed weight gives another hash.
    with torch.no_grad():
        next(loaded.net.decoder.parameters()).view(-1)[0] += 1e-3
    assert loaded.hash != model.hash


@pytest.fixture
def model_bytes(trained):
    return trained[2].read_bytes()


def expect_acn_error(path):
    with pytest.raises(AcnError) as info:
        modelfile.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("where", [0.5, 0.3, 0.75, 0.95])
def test_flipped_bytes_raise_acn_error(model_bytes, tmp_path, where):
    bad = bytearray(model_bytes)
    mid = int(len(bad) * where)
    for i in range(mid, mid + 8):
        bad[i] ^= 0xFF
    path = tmp_path / "flipped.acn"
    path.write_bytes(bytes(bad))
    expect_acn_error(path)


@pytest.mark.parametrize("keep", [0, 1, 10, 0.5, -1, -100])
def test_truncated_file_raises_acn_error(model_bytes, tmp_path, keep):
    n = keep if isinstance(keep, int) and keep >= 0 else (int(len(model_bytes) * keep) if keep > 0
                                                          else len(model_bytes) + keep)
    path = tmp_path / "truncated.acn"
    path.write_bytes(model_bytes[:n])
    expect_acn_error(path)


def test_non_model_files_raise_acn_error(tmp_path, model_bytes):
    (tmp_path / "text.acn").write_text("hello, I am not a model\n")
    np.save(tmp_path / "array.npy", np.zeros((3, 3)))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"format": "something-else", "version": 1}, tmp_path / "other.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "state.pt")
    (tmp_path / "dir.acn").mkdir()
    for name in ["text.acn", "array.npy", "list.pt", "other.pt", "state.pt", "dir.acn", "missing.acn"]:
        expect_acn_error(tmp_path / name)


def test_future_version_and_tampered_weights_raise_acn_error(model_bytes, tmp_path):
    src = tmp_path / "m.acn"
    src.write_bytes(model_bytes)
    payload = torch.load(src, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v99.acn")
    with pytest.raises(AcnError, match="version 99"):
        modelfile.load(tmp_path / "v99.acn")
    payload = torch.load(src, weights_only=True)
    state = modelfile.unpack_state(payload["weights"])
    name = next(iter(state))
    state[name] = state[name] + 1e-3
    payload["weights"] = modelfile.pack_state(state)
    torch.save(payload, tmp_path / "tampered.acn")
    with pytest.raises(AcnError, match="hash"):
        modelfile.load(tmp_path / "tampered.acn")


def test_packed_weights_restore_every_bit():
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(7, 5, generator=g), "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
             "d": torch.randn(3, generator=g, dtype=torch.float64), "i": torch.arange(5), "b": torch.rand(4) > 0.5}
    restored = modelfile.unpack_state(modelfile.pack_state(state))
    assert list(restored) == list(state)
    for k in state:
        assert restored[k].dtype == state[k].dtype and restored[k].shape == state[k].shape
        assert restored[k].view(-1).numpy().tobytes() == state[k].view(-1).numpy().tobytes()


def test_damaged_weights_blob_raises_acn_error(model_bytes, tmp_path):
    payload = torch.load(io.BytesIO(model_bytes), weights_only=True)
    blob = payload["weights"]["blob"].clone()
    for name, damage in [("short", blob[:-9]), ("flipped", blob.clone().index_put_(
            (torch.tensor([len(blob) // 2]),), blob[len(blob) // 2:len(blob) // 2 + 1] ^ 0x10))]:
        payload["weights"]["blob"] = damage
        torch.save(payload, tmp_path / f"{name}.acn")
        expect_acn_error(tmp_path / f"{name}.acn")


def test_version_1_model_files_still_load(trained, tmp_path):
    """Files written before the weights were compressed (plain state dict) load, checked against the hash
    of their day (which did not cover the head tables and numerics), and get the same tables and hash as
    the current format."""
    model = trained[1]
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    old_hash = modelfile.content_hash(state, model.spec, model.config, model.unconditional, model.buckets)
    payload = {"format": modelfile.FORMAT, "version": 1, "hash": old_hash, "spec": model.spec.to_dict(),
               "config": model.config.to_dict(), "state": state, "unconditional": model.unconditional.to_dict(),
               "buckets": model.buckets.to_dict(), "meta": "{}"}
    torch.save(payload, tmp_path / "v1.acn")
    assert modelfile.load(tmp_path / "v1.acn").hash == model.hash


def flip_bit_at(data: bytes, pattern: bytes, offset: int = 0) -> bytes:
    pos = data.index(pattern) + offset
    bad = bytearray(data)
    bad[pos] ^= 0x01
    return bytes(bad)


def test_damaged_hash_key_raises_acn_error(model_bytes, tmp_path):
    path = tmp_path / "badkey.acn"
    path.write_bytes(flip_bit_at(model_bytes, b"hash"))  # first occurrence: the key in data.pkl
    expect_acn_error(path)


def test_damaged_meta_raises_acn_error(model_bytes, tmp_path):
    path = tmp_path / "badmeta.acn"
    path.write_bytes(flip_bit_at(model_bytes, b'"train_config"'))  # '"' -> '#': invalid JSON
    expect_acn_error(path)


# -- resume --------------------------------------------------------------------------------------------------

def test_resume_is_exact(tmp_path, digits300, monkeypatch):
    """N steps in one go == N/2 steps, then a new Trainer resuming to N: every tensor identical. (The KL
    warm-up is given in steps: the default, a fraction of the run, differs between a 10- and a 20-step run.)"""
    monkeypatch.setattr(trainmod, "fit_unconditional", functools.partial(fit_unconditional, candidates=(1, 2)))

    def config(steps):
        return TrainConfig(steps=steps, batch_size=32, threads=1, log_every=4, checkpoint_every=5,
                           unique_neighbours=True, kl_warmup=8)

    whole = Trainer(digits300, tmp_path / "a" / "m.acn", TINY, config(20))
    model_a = whole.run(progress=False)
    first = Trainer(digits300, tmp_path / "b" / "m.acn", TINY, config(10), keep_checkpoint=True)
    first.run(progress=False)
    second = Trainer(digits300, tmp_path / "b" / "m.acn", TINY, config(20), resume=True)
    assert second.step == 10
    model_b = second.run(progress=False)
    for name in ("net", "ema"):
        sa, sb = getattr(whole, name).state_dict(), getattr(second, name).state_dict()
        assert sa.keys() == sb.keys()
        different = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not different, (name, different)
    opt_a, opt_b = whole.opt.state_dict()["state"], second.opt.state_dict()["state"]
    assert all(torch.equal(opt_a[p][s], opt_b[p][s]) for p in opt_a for s in opt_a[p])
    assert np.array_equal(whole.memory.codes, second.memory.codes)
    assert np.array_equal(whole.unique.used, second.unique.used)
    assert model_a.hash == model_b.hash
    # And the resumed run is not simply the same as a run that started over.
    fresh = Trainer(digits300, tmp_path / "c" / "m.acn", TINY, config(10), resume=False)
    while fresh.step < 10:
        fresh.train_step()
    assert not all(torch.equal(v, second.net.state_dict()[k]) for k, v in fresh.net.state_dict().items())


def test_resume_refuses_other_configuration(tmp_path, digits300):
    config = TrainConfig(steps=2, batch_size=32, threads=1)
    Trainer(digits300, tmp_path / "m.acn", TINY, config).save_checkpoint()
    other = ModelConfig(**{**TINY.to_dict(), "latent_dim": 5})
    with pytest.raises(AcnError, match="checkpoint"):
        Trainer(digits300, tmp_path / "m.acn", other, config)
    assert Trainer(digits300, tmp_path / "m.acn", other, config, resume=False).step == 0


@pytest.mark.parametrize("variant", ["pixelvae", "pixelcnn"])
def test_variants_train_with_the_cut_input_ignored(tmp_path, digits300, variant):
    """A Gated PixelVAE's prior is the same mixture for every neighbour; a Gated PixelCNN's pixels do not depend
    on z. Both still learn (the loss falls); the cut weights are exact zeros, so quantised networks ignore it too."""
    config = TrainConfig(steps=40, batch_size=32, learning_rate=3e-3, threads=1, log_every=10, variant=variant)
    model = Trainer(digits300, tmp_path / "m.acn", TINY, config, resume=False).run(progress=False)
    assert model.meta["variant"] == variant
    log = [json.loads(line) for line in log_path(tmp_path / "m.acn").read_text().splitlines()]
    assert log[-1]["loss"] < 0.9 * log[0]["loss"]
    net = model.net.eval()
    codes = torch.randn(6, TINY.latent_dim) * 3
    x = torch.from_numpy(digits300.images[:6].transpose(0, 3, 1, 2).copy()).long()
    prior = net.prior(codes)
    logits = net.decoder.logits(x, codes)
    if variant == "pixelvae":
        for t in (prior.log_weights, prior.means, prior.scales):
            assert torch.equal(t, t[:1].expand_as(t))
        assert not torch.equal(logits, net.decoder.logits(x, codes[:1].expand_as(codes)))   # the decoder reads z
    else:
        assert torch.equal(logits, net.decoder.logits(x, torch.zeros_like(codes)))
        assert not torch.equal(prior.means, prior.means[:1].expand_as(prior.means))          # the prior reads ĉ
    for weight, mask in trainmod.cut_inputs(net, variant):
        assert mask.sum() < mask.numel() and not weight[mask == 0].any()


def test_a_checkpoint_of_one_variant_does_not_resume_another(tmp_path, digits300):
    Trainer(digits300, tmp_path / "m.acn", TINY, TrainConfig(steps=2, batch_size=32, threads=1)).save_checkpoint()
    with pytest.raises(AcnError, match="checkpoint"):
        Trainer(digits300, tmp_path / "m.acn", TINY, TrainConfig(steps=2, batch_size=32, threads=1,
                                                                 variant="pixelvae"))



# -- training further from a model ---------------------------------------------------------------------------

@pytest.mark.parametrize("exact", [False, True], ids=["float", "exact"])
def test_init_starts_from_the_models_networks_and_codes(trained, digits300, tmp_path, exact):
    _, model, _ = trained
    if exact:   # a shipped exact file holds integer maps only; its float network is what they stand for
        from acncodec.quantize import calibration_set, quantise_model
        path = tmp_path / "exact.acn"
        modelfile.save(quantise_model(model, calibration_set(digits300)), path, weights=False)
        model = modelfile.load(path)
        assert not model.has_weights
    config = TrainConfig(steps=3, batch_size=32, learning_rate=3e-3, threads=1, kl_warmup=0)
    trainer = Trainer(digits300, tmp_path / "further.acn", TINY, config, resume=False, init=model)
    start = model.net.state_dict()
    assert all(torch.equal(trainer.net.state_dict()[k], start[k]) for k in start)
    assert all(torch.equal(trainer.ema.state_dict()[k], start[k]) for k in start)
    codes = model.net.encoder(torch.from_numpy(digits300.images.transpose(0, 3, 1, 2)).long()).detach().numpy()
    np.testing.assert_allclose(trainer.memory.codes, codes, rtol=1e-5, atol=1e-5)
    # Trained weights and real neighbours: its first steps cost far less than a fresh run's.
    fresh = Trainer(digits300, tmp_path / "fresh.acn", TINY, config, resume=False)
    loss = lambda t: np.mean([t.train_step()["loss"] for _ in range(3)])  # noqa: E731
    assert loss(trainer) < 0.8 * loss(fresh)
    further = trainer.run(progress=False)
    torch.set_num_threads(1)
    assert further.meta["initialised_from"]["hash"] == model.hash
    assert further.meta["initialised_from"]["steps"] == 100 and further.meta["steps"] == 3


def test_a_resumed_run_started_from_a_model_still_records_it(trained, digits300, tmp_path):
    """The record of the starting model survives an interruption: the resumed run's model names it too."""
    _, model, _ = trained
    config = TrainConfig(steps=4, batch_size=32, threads=1, kl_warmup=0)
    first = Trainer(digits300, tmp_path / "m.acn", TINY, config, init=model)
    first.train_step()
    first.save_checkpoint()
    resumed = Trainer(digits300, tmp_path / "m.acn", TINY, config, init=model)
    assert resumed.step == 1
    out = resumed.run(progress=False)
    torch.set_num_threads(1)
    assert out.meta["initialised_from"]["hash"] == model.hash and out.meta["steps"] == 4
    # a model trained from that one records the whole chain of starting models
    again = Trainer(digits300, tmp_path / "again.acn", TINY, TrainConfig(steps=1, batch_size=32, threads=1,
                                                                         kl_warmup=0), init=out).run(progress=False)
    torch.set_num_threads(1)
    chain = again.meta["initialised_from"]
    assert chain["hash"] == out.hash and chain["initialised_from"]["hash"] == model.hash


def test_init_refuses_another_spec_network_or_variant(trained, digits300, tmp_path):
    _, model, _ = trained
    config = TrainConfig(steps=2, batch_size=32, threads=1)
    with pytest.raises(AcnError, match="decoder_layers 2 .the run asks 3"):
        Trainer(digits300, tmp_path / "a.acn", ModelConfig(**{**TINY.to_dict(), "decoder_layers": 3}), config,
                init=model)
    with pytest.raises(AcnError, match="it is for .*the data is"):
        Trainer(from_array(digits300.images[..., 0] > 8, levels=2), tmp_path / "b.acn", TINY, config, init=model)
    with pytest.raises(AcnError, match="acn model, the run trains pixelvae"):
        Trainer(digits300, tmp_path / "c.acn", TINY, TrainConfig(steps=2, batch_size=32, threads=1,
                                                                 variant="pixelvae"), init=model)


def test_a_checkpoint_started_from_one_model_does_not_resume_a_fresh_run(trained, digits300, tmp_path):
    _, model, _ = trained
    config = TrainConfig(steps=2, batch_size=32, threads=1)
    Trainer(digits300, tmp_path / "m.acn", TINY, config, init=model).save_checkpoint()
    with pytest.raises(AcnError, match="checkpoint"):
        Trainer(digits300, tmp_path / "m.acn", TINY, config)

# -- command line --------------------------------------------------------------------------------------------

CLI_TRAIN = ["train", "digits:200", "--steps", "5", "--decoder-channels", "8", "--decoder-layers", "2", "-q",
             "--threads", "1"]


def one_error_line(result):
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("error: ")
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1
    return lines[-1]


def test_cli_train_writes_model_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "digits.acn"
    runner = CliRunner()
    result = runner.invoke(main, [a for a in CLI_TRAIN if a != "-q"] + ["-o", str(out)])
    torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    model = modelfile.load(out)
    assert model.meta["steps"] == 5 and model.meta["train_images"] == 200
    assert model.config.decoder_channels == 8 and model.config.decoder_layers == 2
    assert model.spec.levels == 17 and (model.spec.height, model.spec.width) == (8, 8)
    assert re.search(rf"hash {model.hash[:12]}", result.stdout)
    # p(z) refitted with full covariances by default, coded by the exact numerics the CLI quantises to
    assert model.numerics == "exact1" and model.unconditional.full
    assert model.meta["unconditional_selection"]["covariance"] == "full"

    assert not checkpoint_path(out).exists()   # removed once the model is written, and the output says so
    assert "checkpoint removed" in result.stderr and str(log_path(out)) in result.stderr
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, log_path(out))}
    again = runner.invoke(main, CLI_TRAIN + ["-o", str(out)])
    message = one_error_line(again)
    assert str(out) in message and "--force" in message
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before


def test_cosine_learning_rate_falls_from_the_rate_to_zero():
    rates = np.array([learning_rate_at(s, 100, 1e-3, "cosine") for s in range(101)])
    assert rates[0] == 1e-3 and abs(rates[50] - 5e-4) < 1e-12 and abs(rates[100]) < 1e-15
    assert np.all(np.diff(rates) < 0)
    assert learning_rate_at(70, 100, 1e-3, "constant") == 1e-3
    assert learning_rate_at(3, None, 1e-3, "cosine") == 1e-3     # a time-budgeted run before its plan
    with pytest.raises(AcnError, match="schedule"):
        TrainConfig(lr_schedule="linear")


def test_the_trainer_steps_at_the_scheduled_rate(tmp_path, digits300):
    config = TrainConfig(steps=6, batch_size=8, learning_rate=2e-3, lr_schedule="cosine", threads=1)
    trainer = Trainer(digits300, tmp_path / "m.acn", TINY, config, resume=False)
    used = []
    for _ in range(6):
        trainer.train_step()
        used.append(trainer.opt.param_groups[0]["lr"])
    torch.set_num_threads(1)
    assert used == [learning_rate_at(s, 6, 2e-3, "cosine") for s in range(6)] and used[0] > used[-1] > 0


def test_cli_train_init_takes_the_models_sizes_and_refuses_a_clash(tmp_path):
    first = tmp_path / "first.acn"
    runner = CliRunner()
    assert runner.invoke(main, CLI_TRAIN + ["-o", str(first), "--no-quantize"]).exit_code == 0
    # No size given: the model's (decoder 8 x 2, not the defaults); no warm-up; the start is said.
    again = tmp_path / "again.acn"
    result = runner.invoke(main, ["train", "digits:200", "--steps", "2", "--threads", "1", "--init", str(first),
                                  "-o", str(again)])
    torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    assert f"starting from {first}" in result.stderr
    model = modelfile.load(again)
    assert (model.config.decoder_channels, model.config.decoder_layers) == (8, 2)
    assert model.meta["train_config"]["kl_warmup"] == 0
    assert model.meta["initialised_from"]["hash"] == modelfile.load(first).hash
    # The short-run warning counts the steps the model already had: 5 + 2 is short, 3,000 + 2 is not.
    assert "warning:" in result.stderr
    seasoned = modelfile.load(first)
    seasoned.meta["steps"] = 3000
    modelfile.save(seasoned, tmp_path / "seasoned.acn")
    longer = runner.invoke(main, ["train", "digits:200", "--steps", "2", "--threads", "1",
                                  "-o", str(tmp_path / "l.acn"), "--init", str(tmp_path / "seasoned.acn")])
    torch.set_num_threads(1)
    assert longer.exit_code == 0, longer.output
    assert "warning:" not in longer.stderr and "starting from" in longer.stderr
    clash = runner.invoke(main, CLI_TRAIN[:-2] + ["--threads", "1", "--init", str(first), "--decoder-layers", "3",
                                                  "-o", str(tmp_path / "never.acn")])
    message = one_error_line(clash)
    assert "decoder_layers 2 (the run asks 3)" in message and "--init" in message
    assert not (tmp_path / "never.acn").exists()
    np.save(tmp_path / "binary.npy", (load("digits:200").images[..., 0] > 8).astype(np.uint8))
    binary = runner.invoke(main, ["train", str(tmp_path / "binary.npy"), "--levels", "2"] + CLI_TRAIN[2:]
                           + ["--init", str(first), "-o", str(tmp_path / "b.acn")])
    assert "the data is" in one_error_line(binary)


@pytest.mark.parametrize("data", ["no-such-data-set", "digits:nosplit", "digits:0", "digits:all:99999",
                                  "missing.npy", "EMPTYDIR"])
def test_cli_bad_data_gives_one_line_error(tmp_path, data):
    if data == "EMPTYDIR":
        (tmp_path / "empty").mkdir()
        data = str(tmp_path / "empty")
    elif data.endswith(".npy"):
        data = str(tmp_path / data)
    out = tmp_path / "never.acn"
    result = CliRunner().invoke(main, ["train", data, "-o", str(out), "--steps", "1", "-q", "--threads", "1"])
    one_error_line(result)
    assert not out.exists() and not checkpoint_path(out).exists()


@pytest.mark.parametrize("option", [["-k", "0"], ["--lr", "-1"], ["--threads", "0"], ["--decoder-layers", "0"],
                                    ["--batch-size", "0"]],
                         ids=["k0", "lr-1", "threads0", "layers0", "batch0"])
def test_cli_bad_option_gives_one_line_error(tmp_path, option):
    args = ["train", "digits:200", "--steps", "2", "--decoder-channels", "8", "--latent-dim", "4", "-q",
            "-o", str(tmp_path / "m.acn")]
    if option[0] != "--threads":
        args += ["--threads", "1"]
    if option[0] != "--decoder-layers":
        args += ["--decoder-layers", "2"]
    result = CliRunner().invoke(main, args + option)
    torch.set_num_threads(1)
    one_error_line(result)


# -- devices -------------------------------------------------------------------------------------------------

def test_device_code_memory_finds_what_faiss_finds():
    """The accelerator's memory (exact search in torch), run here on the CPU: the same neighbours as the faiss
    memory, the datum excluded by index (its duplicates elsewhere still count)."""
    from acncodec.knn import DeviceCodeMemory
    rng = np.random.default_rng(3)
    host = CodeMemory(200, 6, np.random.default_rng(0))
    device = DeviceCodeMemory(200, 6, np.random.default_rng(0), "cpu")
    assert np.array_equal(host.codes, device.codes)
    ids = rng.permutation(200)[:40]
    codes = rng.standard_normal((40, 6)).astype(np.float32)
    codes[1] = codes[0]
    host.write(ids, torch.from_numpy(codes))
    device.write(ids, torch.from_numpy(codes))
    assert np.array_equal(host.codes, device.codes)
    found = device.neighbours(ids, 5)
    check_nearest_others(found, device.codes[ids], ids, device.codes, 5)
    assert np.array_equal(np.sort(found, axis=1), np.sort(host.neighbours(ids, 5), axis=1))
    assert ids[1] in found[0] and ids[0] in found[1]
    assert torch.equal(device.read(ids[:3]), torch.from_numpy(codes[:3]))
    with pytest.raises(ValueError):
        device.neighbours(ids, 200)


def test_auto_device_and_a_missing_device(monkeypatch):
    from acncodec.train import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"
    with pytest.raises(AcnError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(AcnError, match="no MPS device"):
        resolve_device("mps")
    with pytest.raises(AcnError, match="device must be one of"):
        TrainConfig(device="tpu")


def test_the_device_code_path_trains_like_the_cpu_path(tmp_path, digits300, monkeypatch):
    """A run through the accelerator's code path (batches moved to the device, the memory and its search on
    the device, the averaged network brought back for the model file), here with the CPU as the device:
    every logged loss as in the faiss run, and a model that loads and codes."""
    from acncodec import codec, knn
    from acncodec.knn import DeviceCodeMemory
    config = TrainConfig(steps=12, batch_size=32, threads=1, log_every=4, kl_warmup=4)
    runs = {}
    for name in ("host", "device"):
        if name == "device":
            monkeypatch.setattr(knn, "code_memory", lambda size, dim, rng, device:
                                DeviceCodeMemory(size, dim, rng, device))
        trainer = Trainer(digits300, tmp_path / name / "m.acn", TINY, config, resume=False)
        runs[name] = (trainer, trainer.run(progress=False))
    torch.set_num_threads(1)
    assert isinstance(runs["device"][0].memory, DeviceCodeMemory)
    losses = {name: [json.loads(line)["loss"] for line in log_path(tmp_path / name / "m.acn").read_text().splitlines()]
              for name in runs}
    assert len(losses["host"]) == 3 and np.allclose(losses["host"], losses["device"], rtol=1e-5)
    model = modelfile.load(tmp_path / "device" / "m.acn")
    images = load("digits:20")
    blob, _ = codec.compress(images, model, order="original", progress=False, estimate=False)
    assert np.array_equal(codec.decompress(blob, model, progress=False)[0].images, images.images)


def test_cli_train_names_its_device_and_refuses_a_missing_one(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["train", "digits:200", "--steps", "2", "--decoder-channels", "8", "--latent-dim", "4", "--threads", "1",
            "--decoder-layers", "2", "--no-quantize", "-o", str(tmp_path / "m.acn")]
    result = CliRunner().invoke(main, args + ["--device", "cpu"])
    torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    assert "device: cpu" in result.output
    result = CliRunner().invoke(main, args + ["--device", "cuda", "-o", str(tmp_path / "n.acn")])
    torch.set_num_threads(1)
    one_error_line(result)
    assert "no CUDA device" in result.output and not (tmp_path / "n.acn").exists()
