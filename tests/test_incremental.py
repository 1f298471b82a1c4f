"""Tests for acncodec.incremental: the cached decoder reproduces the full parallel pass, repeats bit for bit,
and is causal (nothing not yet decoded can change a logit)."""

import pytest
import torch

from acncodec.coding.raster import raster
from acncodec.incremental import IncrementalDecoder, naive_logits
from acncodec.pixelcnn import GatedPixelCNN

torch.set_num_threads(1)
LATENT = 4
TOL = 1e-5


def make(image_channels, levels, kernel, layers, seed=0, height=5, width=6):
    torch.manual_seed(seed)
    net = GatedPixelCNN(image_channels, levels, LATENT, channels=8, layers=layers, kernel=kernel,
                        height=height, width=width, cond_channels=4).eval()
    with torch.no_grad():  # larger weights and biases than the default init, so every term moves the logits
        for p in net.parameters():
            p.mul_(2.0).add_(0.1 * torch.randn_like(p))
    return net


def data(net, batch, height, width, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, net.levels, (batch, net.image_channels, height, width), generator=g)
    return x, torch.randn(batch, LATENT, generator=g)


def decode(net, x, z):
    """All incremental logits (B, C, outputs, H, W), fed the true pixels in raster order. The `pixel` argument
    carries random junk in channels >= c, which must be ignored."""
    b, ch, height, width = x.shape
    dec = IncrementalDecoder(net, z, width)
    out = torch.empty(b, ch, net.head.outputs, height, width)
    junk = torch.Generator().manual_seed(99)

    class JunkStepper:   # fills channels >= c with junk before asking for channel c
        def predict(self, i, j, c, pixel):
            pixel = torch.from_numpy(pixel).clone()
            pixel[:, c:] = torch.randint(0, net.levels, (b, ch - c), generator=junk)
            return dec.logits(i, j, c, pixel)

        def set_pixel(self, i, j, pixel):
            dec.set_pixel(i, j, pixel)

    def record(logits, i, j, c):
        out[:, c, :, i, j] = logits
        return x[:, c, i, j].numpy()
    raster(JunkStepper(), b, (ch, height, width), record)
    return out


CASES = [  # image_channels, levels, kernel, layers, batch
    (1, 2, 3, 2, 1), (1, 2, 5, 3, 3), (1, 2, 5, 1, 3),
    (1, 17, 3, 3, 1), (1, 17, 5, 2, 3),
    (1, 256, 5, 3, 1), (1, 256, 3, 2, 3),
    (3, 256, 5, 3, 3), (3, 4, 3, 2, 1), (3, 17, 5, 1, 3),
]


@pytest.mark.parametrize("ch,levels,kernel,layers,batch", CASES)
def test_agrees_with_full_pass(ch, levels, kernel, layers, batch):
    net = make(ch, levels, kernel, layers)
    x, z = data(net, batch, 5, 6)
    ref = net.logits(x, z).detach()
    inc = decode(net, x, z)
    assert inc.shape == ref.shape == (batch, ch, 1 if levels == 2 else levels, 5, 6)
    diff = (inc - ref).abs().max().item()
    assert diff < TOL, f"max abs difference {diff:.3g}"
    assert ref.std() > 0.1  # a test net with non-trivial logits


@pytest.mark.parametrize("height,width", [(1, 1), (1, 4), (4, 1), (2, 2), (7, 3)])
def test_agrees_on_images_smaller_than_the_kernel(height, width):
    net = make(3, 4, 5, 3, height=height, width=width)
    x, z = data(net, 2, height, width)
    assert (decode(net, x, z) - net.logits(x, z).detach()).abs().max() < TOL


def test_logits_track_the_image_and_latent():
    """Guards the agreement test: the logits really depend on earlier pixels and on z."""
    net = make(1, 17, 5, 3)
    x, z = data(net, 2, 5, 6)
    base = decode(net, x, z)
    x2 = x.clone()
    x2[:, :, 0, 0] = (x2[:, :, 0, 0] + 5) % 17
    assert (decode(net, x2, z) - base)[..., 1:, :].abs().max() > 1e-3  # rows below (0, 0) see it
    assert (decode(net, x, z + 1) - base).abs().max() > 1e-3


def test_repeat_is_bit_identical():
    net = make(3, 256, 5, 3)
    x, z = data(net, 3, 5, 6)
    assert torch.equal(decode(net, x, z), decode(net, x, z))


def test_causal():
    """Two decoders fed the same prefix and different suffixes (from pixel p, channel c0 on) give identical
    logits up to and including (p, c0); the suffix does show up later."""
    height, width = 5, 6
    net = make(3, 17, 5, 3, height=height, width=width)
    x1, z = data(net, 3, height, width, seed=1)
    for p, c0 in [(0, 0), (8, 1), (17, 2), (29, 0)]:
        x2, _ = data(net, 3, height, width, seed=2 + p)
        x2 = x2.flatten(2).clone()
        x2[:, :, :p] = x1.flatten(2)[:, :, :p]
        x2[:, :c0, p] = x1.flatten(2)[:, :c0, p]
        x2 = x2.view_as(x1)
        assert not torch.equal(x1, x2)
        a, b = decode(net, x1, z).flatten(3), decode(net, x2, z).flatten(3)
        assert torch.equal(a[..., :p], b[..., :p])
        assert torch.equal(a[:, :c0 + 1, :, p], b[:, :c0 + 1, :, p])
        assert (a - b).abs().max() > 1e-3


def test_naive_baseline_matches():
    net = make(3, 17, 3, 2, height=4, width=5)
    x, z = data(net, 2, 4, 5)
    ref = net.logits(x, z).detach()
    partial = torch.zeros_like(x)
    for i in range(4):
        for j in range(5):
            for c in range(3):
                got = naive_logits(net, partial, z, i, j, c, x[:, :, i, j])
                assert (got - ref[:, c, :, i, j]).abs().max() < TOL
            partial[:, :, i, j] = x[:, :, i, j]


def test_out_of_order_calls_are_refused():
    net = make(1, 2, 3, 2, height=3, width=3)
    x, z = data(net, 1, 3, 3)
    dec = IncrementalDecoder(net, z, 3)
    with pytest.raises(ValueError):
        dec.logits(0, 1, 0, x[:, :, 0, 1])       # skips (0, 0)
    with pytest.raises(ValueError):
        dec.set_pixel(0, 0, x[:, :, 0, 0])       # before its logits
    dec.logits(0, 0, 0, x[:, :, 0, 0])
    with pytest.raises(ValueError):
        dec.logits(0, 1, 0, x[:, :, 0, 1])       # (0, 0) not set yet
    with pytest.raises(ValueError):
        dec.logits(0, 0, 1, x[:, :, 0, 0])       # no channel 1
