"""The conditional prior fitted to the codec's tour steps (acncodec.tour_prior)."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acncodec import api, modelfile
from acncodec.cli import main
from acncodec.data import load
from acncodec.prior import ConditionalPrior
from acncodec.tour import tour_for
from acncodec.tour_prior import fit_prior_to_tours, tour_kl, tour_steps


def clustered_codes(n=600, dim=3, seed=0):
    """Codes on a few tight clusters: a tour's steps are short, so a prior that has learned them gains."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim)) * 4
    return torch.from_numpy((centres[rng.integers(0, 6, n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32))


def test_tour_steps_follow_the_codecs_tour_through_the_chosen_rows():
    codes = clustered_codes().numpy()
    rows = np.arange(100, 300)
    pred, succ = tour_steps(codes, rows)
    tour = rows[tour_for(codes[rows])]
    assert np.array_equal(pred, tour[:-1]) and np.array_equal(succ, tour[1:])
    assert sorted(np.r_[pred[:1], succ].tolist()) == rows.tolist()


def test_fitting_to_tours_lowers_the_held_out_tour_kl_and_leaves_the_prior_alone():
    torch.manual_seed(0)
    codes = clustered_codes()
    prior = ConditionalPrior(3, 3, hidden=16)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    fitted, record = fit_prior_to_tours(prior, codes, set_size=200, steps=60, learning_rate=3e-3)
    torch.set_num_threads(1)
    assert record["kept"] and fitted is not prior
    assert record["held_out_tour_kl_after"] < record["held_out_tour_kl_before"] - 0.5
    assert record["set_size"] == 200 and record["steps"] == 60 and record["held_out_codes"] == 60
    assert all(torch.equal(v, prior.state_dict()[k]) for k, v in before.items())   # the original untouched
    # the record's figure is the held-out tour's KL under the returned prior
    rng = np.random.default_rng(0)
    held = np.sort(rng.permutation(len(codes))[:60])
    assert tour_kl(fitted, codes, *tour_steps(codes.numpy(), held)) == pytest.approx(
        record["held_out_tour_kl_after"], rel=1e-9)


def test_a_fit_that_makes_the_prior_worse_is_not_kept():
    torch.manual_seed(0)
    codes = clustered_codes()
    prior = ConditionalPrior(3, 3, hidden=16)
    kept, record = fit_prior_to_tours(prior, codes, set_size=200, steps=5, learning_rate=50.0)
    torch.set_num_threads(1)
    assert not record["kept"] and kept is prior
    assert record["held_out_tour_kl_after"] >= record["held_out_tour_kl_before"]


def test_cli_train_and_quantize_fit_the_prior_to_tours_and_the_model_codes(tmp_path):
    args = ["train", "digits:200", "--steps", "3", "--decoder-channels", "8", "--decoder-layers", "2", "-q",
            "--threads", "1", "--latent-dim", "4", "--prior-hidden", "16"]
    out = tmp_path / "m.acn"
    result = CliRunner().invoke(main, args + ["-o", str(out), "--tour-prior", "100", "--tour-prior-steps", "4"])
    torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    model = modelfile.load(out)
    fit = model.meta["tour_prior"]
    assert model.numerics == "exact1" and fit["set_size"] == 100 and fit["steps"] == 4
    assert model.meta["train_config"]["steps"] == 3
    data = load("digits:30")
    blob, report = api.compress(data, model, order="tour", chains=2, baseline=False)
    out, _ = api.decompress(blob, model)
    assert sorted(x.tobytes() for x in out.images) == sorted(x.tobytes() for x in data.images)   # tour order
    assert 0.9 < report["payload_nats_per_image"] / report["estimate_nats_per_image"] < 1.2, report

    float_model = tmp_path / "f.acn"
    assert CliRunner().invoke(main, args + ["-o", str(float_model), "--no-quantize"]).exit_code == 0
    exact = tmp_path / "e.acn"
    result = CliRunner().invoke(main, ["quantize", str(float_model), "-o", str(exact), "--data", "digits:200",
                                       "--tour-prior", "100", "--tour-prior-steps", "4"])
    torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    quantised = modelfile.load(exact)
    assert quantised.meta["tour_prior"]["set_size"] == 100
    assert "--tour-prior 100 --tour-prior-steps 4" in quantised.meta["quantize_command"]
    refused = CliRunner().invoke(main, ["quantize", str(exact), "-o", str(tmp_path / "again.acn"), "--data",
                                        "digits:200", "--tour-prior", "100"])
    assert refused.exit_code != 0 and "already an exact model" in refused.output
