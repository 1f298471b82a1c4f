"""The integer networks of numerics "exact1" (acncodec/quantize.py): the full and incremental passes give
identical integer logits for any batch size, a row's outputs do not depend on its batch, and the integers stay
close to the float network they were quantised from."""

import numpy as np
import pytest
import torch

from acncodec.quantize import IntNetworks, quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, tiny_model

FRAC = 12   # output formats used here: codes, prior outputs and logits at 2^-12


@pytest.fixture(scope="module", params=list(SPECS))
def quantised(request):
    spec = SPECS[request.param]
    model = tiny_model(spec)
    images = to_tensor(random_images(spec, 64).images)
    return model, quantise_networks(model.net, images, FRAC, FRAC, FRAC), images


def incremental_logits(decoder, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    stepper = decoder.stepper(z)
    n, channels, height, width = x.shape
    out = torch.zeros(n, channels, decoder.outputs, height, width, dtype=torch.float64)
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                out[:, c, :, i, j] = stepper.logits(i, j, c, x[:, :, i, j].numpy())
            stepper.set_pixel(i, j, x[:, :, i, j].numpy())
    return out


def test_values_are_integers_and_close_to_the_float_network(quantised):
    model, q, images = quantised
    with torch.no_grad():
        codes = q.encoder(images)
        assert torch.equal(codes, torch.round(codes))
        # quantisation error of a few output steps at most (measured: below 1.2 steps on these models)
        assert (codes / 2 ** FRAC - model.net.encoder(images)).abs().max() < 4 * 2.0 ** -FRAC
        raw = q.prior(codes)
        mixture = model.net.prior(codes.float() / 2 ** FRAC)
        assert (raw[..., 1] / 2 ** FRAC - mixture.means).abs().max() < 4 * 2.0 ** -FRAC
        logits = q.decoder.logits(images, codes)
        assert torch.equal(logits, torch.round(logits))
        float_logits = model.net.decoder.logits(images, codes.float() / 2 ** FRAC).double()
        assert (logits / 2 ** FRAC - float_logits).abs().max() < 4 * 2.0 ** -FRAC


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_incremental_and_full_pass_agree_bit_for_bit(quantised, batch):
    _, q, images = quantised
    x = images[:batch]
    codes = q.encoder(x)
    full = q.decoder.logits(x, codes)
    assert torch.equal(incremental_logits(q.decoder, x, codes), full)
    # a row's outputs do not depend on the batch it is in
    assert torch.equal(q.encoder(images)[:batch], codes)
    assert torch.equal(q.decoder.logits(images, q.encoder(images))[:batch], full)
    assert torch.equal(q.prior(q.encoder(images))[:batch], q.prior(codes))


def test_round_trip_through_a_tensor_dict(quantised):
    _, q, images = quantised
    again = IntNetworks.from_dict({k: v.clone() for k, v in q.to_dict().items()})
    codes = q.encoder(images)
    assert torch.equal(again.encoder(images), codes)
    assert torch.equal(again.prior(codes), q.prior(codes))
    assert torch.equal(again.decoder.logits(images, codes), q.decoder.logits(images, codes))


def test_accumulators_are_proven_below_2_to_the_53(quantised):
    _, q, _ = quantised
    maps = list(q.encoder.convs) + list(q.encoder.fc) + list(q.prior.layers.values()) \
        + list(q.decoder.cmap.values()) + [a for layer in q.decoder.layers for a in layer.maps.values()]
    for a in maps:
        a.check_bound()
        assert a.weight.abs().max() < 2 ** 15
