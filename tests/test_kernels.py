"""The compiled per-pixel step (acncodec/coding/kernels.py, numba) gives the numpy step's logits bit for bit,
for exact1's wide maps (float64) and exact2's narrow ones (float32), every kind of image; without numba the
stepper runs the numpy step."""

import numpy as np
import pytest

from acncodec.coding import intnet
from acncodec.quantize import quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, step_through, tiny_model

FRAC = 12


def stepped_logits(decoder, x, z, compiled):
    stepper = intnet.Stepper(decoder, z, compiled=compiled)
    assert (stepper.compiled is not None) == compiled
    return step_through(stepper, x, decoder.outputs)


@pytest.mark.parametrize("narrow", [False, True], ids=["exact1", "exact2"])
@pytest.mark.parametrize("name", list(SPECS))
def test_compiled_step_equals_the_numpy_step(name, narrow):
    spec = SPECS[name]
    images = to_tensor(random_images(spec, 13, seed=3).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC,
                                                          narrow=narrow).to_dict())
    x = images.numpy()
    z = nets.encoder(x)
    compiled = stepped_logits(nets.decoder, x, z, True)
    assert np.array_equal(compiled, stepped_logits(nets.decoder, x, z, False))
    assert np.array_equal(compiled, nets.decoder.logits(x, z))


def test_without_numba_the_stepper_runs_numpy(monkeypatch):
    spec = SPECS["digits-like"]
    images = to_tensor(random_images(spec, 5).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC).to_dict())
    monkeypatch.setattr(intnet, "_kernels", lambda: None)
    x = images.numpy()
    z = nets.encoder(x)
    stepper = intnet.Stepper(nets.decoder, z)
    assert stepper.compiled is None
    assert np.array_equal(stepped_logits(nets.decoder, x, z, False), nets.decoder.logits(x, z))
