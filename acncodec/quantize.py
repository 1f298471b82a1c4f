"""Post-training quantisation of the ACN's networks into integer networks (numerics "exact1"; "exact2" with
narrow decoder maps, `IntAffine.quantise_narrow`).

Every value on the coding path is an integer, held in a float64 tensor, standing for value / 2^frac. Why that
is exact on every machine (Balle, Johnston, Minnen 2019, "Integer networks for data compression with
latent-variable models"):

* a linear map (matmul, or a convolution done as im2col + matmul) of integer weights and integer activations
  is computed exactly by float64 hardware in any summation order, blocking, thread split or FMA use, as long
  as every partial sum stays below 2^53. Each map clamps its input to a bound fixed at quantisation time and
  `IntAffine.check_bound` proves, for each output, sum |w| * bound + |bias| < 2^53 for it;
* rescaling multiplies by an exact power of two and rounds with floor(x + 0.5): exact in float64;
* tanh and sigmoid come from integer tables (`FunctionTable`) computed once here with float math and stored in
  the model file; at coding time they are read with integer-only linear interpolation. ReLU, clamps, adds of
  aligned integers and the products of the gates (both factors below 2^15) are exact.

Formats: hidden activations use `act_frac` fractional bits; each affine map has its own weight format, the
most fractional bits that keep |w| < 2^15 (16-bit weights) and its accumulator bound; outputs leave in the
formats the coding tables expect (codes at `code_frac`, the prior's raw outputs at `raw_frac` with the means at
`code_frac`, pixel logits at `logit_frac`). Input bounds are calibrated on training images (the float
network's largest |activation| per map, times `MARGIN`).

This module only makes the integer networks and stores them (`IntNetworks.to_dict`); `coding/intnet.py` runs
them at coding time, in numpy, without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .acn import ACN

EXACT_LIMIT = 2.0 ** 53
WEIGHT_LIMIT = 2 ** 15          # |integer weight| < 2^15: 16-bit weights
MARGIN = 2.0                    # calibrated activation bounds are widened by this factor before clamping
ACT_FRAC = 14                   # hidden activations: 2^-14 resolution
TANH_RANGE, SIGMOID_RANGE = 8, 16   # beyond these |x| the functions are saturated below 2^-22
TABLE_STEP_FRAC = 7             # table knots every 2^-7 of the input, linearly interpolated
# Narrow maps (numerics "exact2", `IntAffine.quantise_narrow`): inputs within 2^11 where the fan-in allows
# weights of at least 6 bits beside them, else within 2^9; weights below 2^-24 of their limit round to zero.
NARROW_INPUTS = (2 ** 11, 2 ** 9)
NARROW_MIN_WEIGHT = 63
NARROW_MAX_WEIGHT_FRAC = 24


def to_int(x, frac: int) -> torch.Tensor:
    return torch.floor(torch.as_tensor(x, dtype=torch.float64) * 2.0 ** frac + 0.5)


class IntAffine:
    """y = round((W x + b) / 2^shift) with integer W (out, fan_in), b at in_frac + w_frac; x clamped to
    |x| <= bound first, unless `clamp` is False because the input is bounded by construction (a gate's output
    or a pixel, |x| <= 1). `shift` may differ per output (a tensor), for outputs leaving in different formats.
    (`coding.intnet.Affine` computes it.)"""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, shift, bound: float, clamp: bool = True,
                 in_shift: int = 0):
        self.weight = weight.double()
        self.bias = bias.double()
        self.shift = (shift if isinstance(shift, torch.Tensor) else torch.tensor(float(shift))).double()
        self.bound = float(bound)
        self.clamp = bool(clamp)
        self.in_shift = int(in_shift)

    @classmethod
    def quantise(cls, weight: torch.Tensor, bias: torch.Tensor | None, in_frac: int, out_frac,
                 in_bound_real: float, bounded: bool = False, narrow: bool = False) -> "IntAffine":
        """weight (out, fan_in) float; out_frac an int or a per-output tensor of ints. `bounded`: the input
        never exceeds 1 in magnitude (bound 2^in_frac exactly, no clamp needed). `narrow`: a map whose sums
        stay below 2^24 (`quantise_narrow`)."""
        weight = weight.detach().double()
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
        if narrow:
            return cls.quantise_narrow(weight, bias, in_frac, out_frac, None if bounded else in_bound_real * MARGIN)
        bound = 2 ** in_frac if bounded else math.ceil(max(in_bound_real, 2.0 ** -in_frac) * MARGIN * 2.0 ** in_frac)
        w_max = max(float(weight.abs().max()), 1e-30)
        w_frac = math.floor(math.log2((WEIGHT_LIMIT - 1) / w_max))
        while True:
            w = to_int(weight, w_frac)
            b = to_int(bias, w_frac + in_frac)
            if weight.shape[1] * float(w.abs().max()) * bound + float(b.abs().max()) < EXACT_LIMIT / 2:
                break
            w_frac -= 1
        shift = (in_frac + w_frac) - (torch.as_tensor(out_frac, dtype=torch.float64))
        aff = cls(w, b, shift, bound, clamp=not bounded)
        aff.check_bound()
        return aff

    @classmethod
    def quantise_narrow(cls, weight, bias, in_frac: int, out_frac, in_bound: float | None) -> "IntAffine":
        """A map whose sums stay below 2^24, which the coder makes in float32 (`coding.intnet.FLOAT32_LIMIT`):
        the input, at in_frac, is first rounded to the map's own format, in_frac - in_shift, the most fractional
        bits that keep in_bound (real units) within NARROW_INPUTS (2^11 where the weights keep 6 bits or more
        beside it, else 2^9) and clamped; an input bounded by construction (|x| <= 1, in_bound None) is not
        clamped, its bound exact. Each output's weights take the most fractional bits that keep the sum of their
        magnitudes times the bound within a budget of 2^23 (and each below 2^15), the bias and rounding within
        the rest of 2^24."""
        from .coding.intnet import FLOAT32_LIMIT
        budget = FLOAT32_LIMIT / 2
        # each output's sum of |weights| over its largest: the fan-in that counts for the budget
        spread = float((weight.abs().sum(dim=1) / weight.abs().amax(dim=1).clamp_min(1e-30)).max())
        x_limit = next(b for b in NARROW_INPUTS
                       if spread * NARROW_MIN_WEIGHT * b < budget or b == NARROW_INPUTS[-1])
        clamp = in_bound is not None
        in_bound = max(float(in_bound), 2.0 ** -in_frac) if clamp else 1.0
        in_shift = max(0, in_frac - math.floor(math.log2(x_limit / in_bound)))
        map_frac = in_frac - in_shift
        bound = min(math.ceil(in_bound * 2.0 ** map_frac), x_limit) if clamp else 2.0 ** map_frac
        # per output, the most fractional bits that keep sum |w| bound within the budget and |w| below 2^15;
        # at most NARROW_MAX_WEIGHT_FRAC, so that an output of (near) zero weights keeps a bias and a shift of
        # ordinary size
        tiny = torch.full((), 1e-30, dtype=torch.float64)
        w_frac = torch.minimum(torch.log2(budget / (bound * weight.abs().sum(dim=1)).clamp_min(tiny)),
                               torch.log2((WEIGHT_LIMIT - 1) / weight.abs().amax(dim=1).clamp_min(tiny)))
        w_frac = torch.floor(w_frac).clamp(max=NARROW_MAX_WEIGHT_FRAC)
        while True:
            w = torch.floor(weight * torch.exp2(w_frac)[:, None] + 0.5)
            b = torch.floor(bias * torch.exp2(w_frac + map_frac) + 0.5)
            shift = (map_frac + w_frac) - torch.as_tensor(out_frac, dtype=torch.float64)
            half = torch.where(shift >= 1, torch.exp2(shift - 1), torch.zeros(()))
            # rounding can push a row past the budget, a large bias past the rest: such an output gives up a bit
            too_big = (w.abs().sum(dim=1) * bound + (b + half).abs() >= FLOAT32_LIMIT) \
                | (w.abs() >= WEIGHT_LIMIT).any(1)
            if not too_big.any():
                break
            w_frac = w_frac - too_big.double()
        aff = cls(w, b, shift, bound, clamp=clamp, in_shift=in_shift)
        aff.check_bound()
        return aff

    def check_bound(self) -> None:
        """The proof that coding checks again when it reads the map (`coding.intnet.Affine.check_bound`)."""
        from .coding.intnet import Affine
        Affine(self.weight, self.bias, self.shift, self.bound, self.clamp, self.in_shift).check_bound()

    def to_dict(self, prefix: str) -> dict:
        d = {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias, f"{prefix}.shift": self.shift,
             f"{prefix}.bound": torch.tensor(self.bound, dtype=torch.float64),
             f"{prefix}.clamp": torch.tensor(self.clamp)}
        if self.in_shift:
            d[f"{prefix}.in_shift"] = torch.tensor(self.in_shift)
        return d


class FunctionTable:
    """f at knots lo + k 2^-step_frac (k = 0..n), as integers at out_frac; read for integer inputs at in_frac
    by clamping to [lo, -lo] and interpolating linearly between knots with integer arithmetic
    (`coding.intnet.Table`)."""

    def __init__(self, values: torch.Tensor, half_range: int, in_frac: int, step_frac: int):
        self.values = values.double()
        self.half_range, self.in_frac, self.step_frac = half_range, in_frac, step_frac

    @classmethod
    def build(cls, fn, half_range: int, in_frac: int, out_frac: int, step_frac: int = TABLE_STEP_FRAC):
        knots = torch.arange(-half_range * 2 ** step_frac, half_range * 2 ** step_frac + 2,
                             dtype=torch.float64) * 2.0 ** -step_frac     # one extra knot past the end
        return cls(to_int(fn(knots), out_frac), half_range, in_frac, step_frac)

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}.values": self.values,
                f"{prefix}.format": torch.tensor([self.half_range, self.in_frac, self.step_frac])}


# ------------------------------------------------------------------------------------------ calibration
class _Bounds:
    """Largest |input| seen per named affine map while the float network runs on calibration images."""

    def __init__(self):
        self.max: dict[str, float] = {}

    def hook(self, name: str):
        def record(module, inputs, output):
            self.max[name] = max(self.max.get(name, 0.0), float(inputs[0].detach().abs().max()))
        return record


def calibrate(net: ACN, x: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Run the float networks on calibration images x (N, C, H, W) level indices; |input| maxima per module."""
    bounds = _Bounds()
    handles = [m.register_forward_hook(bounds.hook(name)) for name, m in net.named_modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    noise = torch.Generator().manual_seed(0)   # the same calibration, so the same exact model, every run
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                xb = x[s:s + batch]
                codes = net.encoder(xb)
                net.prior(codes)
                net.decoder.logits(xb, codes + torch.randn(codes.shape, generator=noise))
    finally:
        for h in handles:
            h.remove()
    return bounds.max


# ------------------------------------------------------------------------------------------ networks
def _flat(module) -> torch.Tensor:
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1)


class IntEncoder:
    """E(x) in integers: codes at code_frac from level indices."""

    def __init__(self, pixel_in: torch.Tensor, convs: list, strides: list[int], fc: list[IntAffine],
                 act_frac: int):
        self.pixel_in, self.convs, self.strides, self.fc, self.act_frac = pixel_in, convs, strides, fc, act_frac

    @classmethod
    def quantise(cls, encoder, bounds: dict, act_frac: int, code_frac: int, pixel_in: torch.Tensor):
        convs, strides, fc = [], [], []
        mods = [(n, m) for n, m in encoder.net.named_children()]
        linears = [(n, m) for n, m in mods if isinstance(m, torch.nn.Linear)]
        for n, m in mods:
            if isinstance(m, torch.nn.Conv2d):
                convs.append(IntAffine.quantise(_flat(m), m.bias, act_frac, act_frac, bounds[f"encoder.net.{n}"]))
                strides.append(m.stride[0])
        for k, (n, m) in enumerate(linears):
            out = code_frac if k == len(linears) - 1 else act_frac
            fc.append(IntAffine.quantise(m.weight, m.bias, act_frac, out, bounds[f"encoder.net.{n}"]))
        return cls(pixel_in, convs, strides, fc, act_frac)

    def to_dict(self, p: str) -> dict:
        d = {f"{p}.strides": torch.tensor(self.strides)}
        for k, a in enumerate(self.convs):
            d.update(a.to_dict(f"{p}.conv{k}"))
        for k, a in enumerate(self.fc):
            d.update(a.to_dict(f"{p}.fc{k}"))
        return d

class IntPrior:
    """The conditional prior's MLP in integers: codes at code_frac -> raw (B, D, M, 3), the mean (index 1) at
    code_frac and the weight logit and scale pre-activation at raw_frac."""

    NAMES = ("h1", "h2", "h3", "out")

    def __init__(self, layers: dict, tanh: FunctionTable, act_frac: int, code_frac: int, dims: tuple[int, int]):
        self.layers, self.tanh, self.act_frac, self.code_frac, self.dims = layers, tanh, act_frac, code_frac, dims

    @classmethod
    def quantise(cls, prior, bounds, tanh, act_frac, code_frac, raw_frac):
        d, m = prior.latent_dim, prior.components
        out_frac = torch.full((d, m, 3), float(raw_frac))
        out_frac[..., 1] = code_frac
        layers = {}
        for name in cls.NAMES:
            mod = getattr(prior, name)
            frac = out_frac.reshape(-1) if name == "out" else act_frac
            layers[name] = IntAffine.quantise(mod.weight, mod.bias, act_frac, frac, bounds[f"prior.{name}"])
        return cls(layers, tanh, act_frac, code_frac, (d, m))

    def to_dict(self, p: str) -> dict:
        d = {f"{p}.dims": torch.tensor(self.dims)}
        for name, a in self.layers.items():
            d.update(a.to_dict(f"{p}.{name}"))
        return d


class IntGatedLayer:
    KEYS = ("vconv", "hconv", "v2h", "hout", "cond")

    def __init__(self, maps: dict, first: bool, kernel: int):
        self.maps, self.first, self.kernel = maps, first, kernel


class IntDecoder:
    """The Gated PixelCNN in integers; logits at logit_frac (`coding.intnet.Decoder` runs it)."""

    def __init__(self, pixel_in, cmap: dict, cmap_dims, layers: list[IntGatedLayer], head: dict,
                 tanh: FunctionTable, sigmoid: FunctionTable, act_frac: int, code_frac: int, shape, outputs: int):
        self.pixel_in, self.cmap, self.cmap_dims, self.layers, self.head = pixel_in, cmap, cmap_dims, layers, head
        self.tanh, self.sigmoid, self.act_frac, self.code_frac = tanh, sigmoid, act_frac, code_frac
        self.C, self.H, self.W = shape
        self.outputs = outputs

    @classmethod
    def quantise(cls, dec, bounds, tanh, sigmoid, act_frac, code_frac, logit_frac, pixel_in, narrow=False):
        b = lambda n: bounds[f"decoder.{n}"]
        quantise = lambda *a, **k: IntAffine.quantise(*a, **k, narrow=narrow)
        cm = dec.condition_map
        up0, up1 = cm.up[1], cm.up[3]
        cmap = {"fc": quantise(cm.fc.weight, cm.fc.bias, code_frac, act_frac, b("condition_map.fc")),
                "up0": quantise(_flat_t(up0), up0.bias, act_frac, act_frac, b("condition_map.up.1")),
                "up1": quantise(_flat_t(up1), up1.bias, act_frac, act_frac, b("condition_map.up.3"))}
        layers = []
        for k, layer in enumerate(dec.layers):
            # bounded by construction: gate outputs (hout; vconv above layer 0) and pixels (layer 0's convs)
            bounded = {"hout", "vconv"} | ({"hconv"} if k == 0 else set())
            maps = {key: quantise(_flat(getattr(layer, key)), getattr(layer, key).bias, act_frac, act_frac,
                                  b(f"layers.{k}.{key}"), key in bounded)
                    for key in IntGatedLayer.KEYS}
            layers.append(IntGatedLayer(maps, layer.first, layer.vconv.kernel_size[1]))
        h = dec.head
        hid = h.features.out_channels // dec.image_channels
        logits_w = _flat(h.logits)
        head = {"features": quantise(_flat(h.features), h.features.bias, act_frac, act_frac, b("head.features")),
                "logits": [quantise(logits_w[c * h.outputs:(c + 1) * h.outputs],
                                    h.logits.bias[c * h.outputs:(c + 1) * h.outputs],
                                    act_frac, logit_frac, b("head.logits"))
                           for c in range(dec.image_channels)]}
        if dec.image_channels > 1:
            head["previous"] = quantise(_flat(h.previous) * h.mask[:, :, 0, 0], None, act_frac, act_frac, 1.0,
                                        bounded=True)
        shape = (dec.image_channels, cm.height, cm.width)
        return cls(pixel_in, cmap, (cm.hidden, cm.h0, cm.w0, hid), layers, head, tanh, sigmoid, act_frac,
                   code_frac, shape, h.outputs)

    # --------------------------------------------------------------------------------------- storage
    def to_dict(self, p: str) -> dict:
        d = {f"{p}.dims": torch.tensor(list(self.cmap_dims) + [self.C, self.H, self.W, self.outputs]),
             f"{p}.layers": torch.tensor([[int(l.first), l.kernel] for l in self.layers])}
        for name, a in self.cmap.items():
            d.update(a.to_dict(f"{p}.cmap.{name}"))
        for k, l in enumerate(self.layers):
            for name, a in l.maps.items():
                d.update(a.to_dict(f"{p}.layer{k}.{name}"))
        d.update(self.head["features"].to_dict(f"{p}.head.features"))
        for c, a in enumerate(self.head["logits"]):
            d.update(a.to_dict(f"{p}.head.logits{c}"))
        if "previous" in self.head:
            d.update(self.head["previous"].to_dict(f"{p}.head.previous"))
        return d

def conv_transpose_as_conv(weight: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d weight (in, out, k, k) as the equivalent Conv2d weight on the zero-stuffed input
    (`coding.intnet.upsample_conv`)."""
    return weight.transpose(0, 1).flip(2, 3)


def _flat_t(module) -> torch.Tensor:
    return conv_transpose_as_conv(module.weight.detach()).reshape(module.weight.shape[1], -1)


# ------------------------------------------------------------------------------------------ the whole
@dataclass
class IntNetworks:
    """The three integer networks of an exact model, with their shared tables and formats."""

    encoder: IntEncoder
    prior: IntPrior
    decoder: IntDecoder
    formats: dict      # act_frac, code_frac, raw_frac, logit_frac

    def to_dict(self) -> dict:
        f = self.formats
        d = {"formats": torch.tensor([f["act_frac"], f["code_frac"], f["raw_frac"], f["logit_frac"]]),
             "pixel_in": self.encoder.pixel_in}
        d.update(self.decoder.tanh.to_dict("tanh"))
        d.update(self.decoder.sigmoid.to_dict("sigmoid"))
        d.update(self.encoder.to_dict("encoder"))
        d.update(self.prior.to_dict("prior"))
        d.update(self.decoder.to_dict("decoder"))
        return d


def quantise_networks(net: ACN, calibration: torch.Tensor, code_frac: int, raw_frac: int, logit_frac: int,
                      act_frac: int = ACT_FRAC, narrow: bool = False) -> IntNetworks:
    """Integer networks from a float ACN, bounds calibrated on images `calibration` (N, C, H, W) levels.
    `narrow`: the decoder's maps made narrow (`IntAffine.quantise_narrow`), the decoder being where the coder
    spends its time; the encoder and prior keep 16-bit weights."""
    if act_frac < code_frac:
        raise ValueError("hidden activations need at least the codes' fractional bits")
    net.eval()
    bounds = calibrate(net, calibration)
    levels = net.decoder.levels
    pixel_in = to_int(torch.arange(levels, dtype=torch.float64) * (2.0 / (levels - 1)) - 1.0, act_frac)
    tanh = FunctionTable.build(torch.tanh, TANH_RANGE, act_frac, act_frac)
    sigmoid = FunctionTable.build(torch.sigmoid, SIGMOID_RANGE, act_frac, act_frac)
    return IntNetworks(IntEncoder.quantise(net.encoder, bounds, act_frac, code_frac, pixel_in),
                       IntPrior.quantise(net.prior, bounds, tanh, act_frac, code_frac, raw_frac),
                       IntDecoder.quantise(net.decoder, bounds, tanh, sigmoid, act_frac, code_frac, logit_frac,
                                           pixel_in, narrow),
                       {"act_frac": act_frac, "code_frac": code_frac, "raw_frac": raw_frac,
                        "logit_frac": logit_frac})


def quantise_model(model, calibration: torch.Tensor, unconditional=None, selection: dict | None = None,
                   numerics: str = "exact1"):
    """A model with numerics "exact1": the float model's networks quantised (bounds calibrated on images
    `calibration` (N, C, H, W) levels, a few hundred training images), and its bucket and head tables as
    integers. The float weights stay in the file (training and evaluation use them); coding uses only the
    integer parts. `unconditional`: a p(z) to use in place of the model's (a full-covariance one, which only
    the exact numerics code; `train.refit_unconditional`), `selection` its fit's record; the bucket table stays
    the model's. `numerics` "exact2": the decoder's maps narrow (`IntAffine.quantise_narrow`), their sums
    below 2^24, which the coder makes in float32. An exact model is requantised: its networks made anew from
    the float networks it stands for, its tables kept as they are."""
    from .coding import exact_tables
    from .coding.exact_numerics import join_parts
    from .modelfile import EXACT_NUMERICS, Model
    nets = quantise_networks(model.net, calibration, exact_tables.CODE_FRAC, exact_tables.RAW_FRAC,
                             exact_tables.LOGIT_FRAC, narrow=numerics == "exact2")
    if model.numerics in EXACT_NUMERICS:
        parts = {k: v for k, v in model.exact.items() if not k.startswith("net.")}     # its tables, as they are
        parts.update({f"net.{k}": v for k, v in nets.to_dict().items()})
        meta = dict(model.meta, requantised_from=model.hash, calibration_images=int(len(calibration)))
        return Model(model.net, model.spec, model.unconditional, model.buckets, meta, None, numerics, parts)
    prior = model.unconditional if unconditional is None else unconditional
    latent = exact_tables.LatentTables.build(model.buckets, prior)
    pixel = exact_tables.PixelTables.build(model.spec.levels)
    meta = dict(model.meta, quantised_from=model.hash, calibration_images=int(len(calibration)))
    if selection is not None:
        meta["unconditional_selection"] = selection
    return Model(model.net, model.spec, prior, model.buckets, meta, model.head if unconditional is None else None,
                 numerics, join_parts(nets, latent, pixel))


def dequantised_state(parts: dict, layout: dict) -> dict:
    """The float network an exact model's integer maps stand for: each weight w / 2^w_frac and bias
    b / 2^(w_frac + in_frac), as a state dict of numpy arrays shaped as `layout` ({name: [dtype, shape]},
    `modelfile.network_layout`). An exact model file can leave its float weights out and still be trained
    further, evaluated and estimated with: this network differs from the one it was quantised from by the
    16-bit rounding of its weights (the coding path never uses it)."""
    from .coding.exact_numerics import split_parts
    net = split_parts(parts)[0]
    act, code, raw, logit = (int(v) for v in np.asarray(net["formats"]))
    encoder = [n for n in layout if n.startswith("encoder.net.") and n.endswith(".weight")]
    convs = [n for n in encoder if len(layout[n][1]) == 4]
    fcs = [n for n in encoder if len(layout[n][1]) == 2]
    # (stored map, module, input format, output format of the map's first row)
    maps = [(f"encoder.conv{k}", n[:-7], act, act) for k, n in enumerate(convs)]
    maps += [("encoder.fc0", fcs[0][:-7], act, act), ("encoder.fc1", fcs[1][:-7], act, code)]
    maps += [(f"prior.{n}", f"prior.{n}", act, raw if n == "out" else act) for n in ("h1", "h2", "h3", "out")]
    maps += [("decoder.cmap.fc", "decoder.condition_map.fc", code, act),
             ("decoder.cmap.up0", "decoder.condition_map.up.1", act, act),
             ("decoder.cmap.up1", "decoder.condition_map.up.3", act, act)]
    layers = sorted({int(n.split(".")[2]) for n in layout if n.startswith("decoder.layers.")})
    maps += [(f"decoder.layer{k}.{key}", f"decoder.layers.{k}.{key}", act, act)
             for k in layers for key in IntGatedLayer.KEYS]
    maps += [("decoder.head.features", "decoder.head.features", act, act)]
    channels = sum(1 for n in net if n.startswith("decoder.head.logits") and n.endswith(".weight"))
    logits = [f"decoder.head.logits{c}" for c in range(channels)]
    if "decoder.head.previous.weight" in net:
        maps += [("decoder.head.previous", "decoder.head.previous", act, act)]
    state = {}

    def real(stored, in_frac, out_frac):
        w, b = np.asarray(net[f"{stored}.weight"]), np.asarray(net[f"{stored}.bias"])
        in_frac -= int(np.asarray(net.get(f"{stored}.in_shift", 0)))    # the map's own input format (exact2)
        shift = np.asarray(net[f"{stored}.shift"], dtype=np.float64).reshape(-1)
        # one weight format per map (exact1: the first output's, whatever format the others leave in), or one
        # per output where every output leaves in the same format (exact2's decoder maps)
        w_frac = (shift if stored.startswith("decoder.") else shift[:1]) + out_frac - in_frac
        w_frac = np.broadcast_to(w_frac, b.shape).astype(np.int64)
        return np.ldexp(w, -w_frac[:, None]), np.ldexp(b, -(w_frac + in_frac))

    for stored, module, in_frac, out_frac in maps:
        w, b = real(stored, in_frac, out_frac)
        shape = layout[f"{module}.weight"][1]
        if module.startswith("decoder.condition_map.up"):     # a transposed convolution's weight (in, out, k, k)
            w = w.reshape(shape[1], shape[0], *shape[2:])[..., ::-1, ::-1].transpose(1, 0, 2, 3)
        state[f"{module}.weight"] = w.reshape(shape)
        if f"{module}.bias" in layout:
            state[f"{module}.bias"] = b
    head = [real(n, act, logit) for n in logits]
    state["decoder.head.logits.weight"] = np.concatenate([w for w, _ in head]).reshape(
        layout["decoder.head.logits.weight"][1])
    state["decoder.head.logits.bias"] = np.concatenate([b for _, b in head])
    if "decoder.head.previous.weight" not in state:   # one channel: the map reads nothing (masked out)
        state["decoder.head.previous.weight"] = np.zeros(layout["decoder.head.previous.weight"][1])
    return {name: np.ascontiguousarray(state[name], dtype=dtype) for name, (dtype, _) in layout.items()}


#: Calibration images by default: a few hundred, spread evenly over the training data.
CALIBRATION_IMAGES = 256


def calibration_set(images, n: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """n images (N, C, H, W) level indices spread evenly over an ImageSet already at the model's levels."""
    pick = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(images.images[pick].transpose(0, 3, 1, 2)).astype(np.int64))


def quantise_file(model_path, data, output, n: int = CALIBRATION_IMAGES, force: bool = False,
                  prior_covariance: str = "diag", tour_prior: int = 0, tour_prior_steps: int = 1000,
                  numerics: str = "exact1"):
    """`acncodec quantize`: read a model, calibrate on DATA (training images), write the exact model.
    prior_covariance "full": p(z) refitted with full covariances to the codes of all of DATA; tour_prior N:
    the conditional prior first fitted to tours through N of those codes at a time (`train.refit_prior_to_tours`).
    numerics "exact2": narrow decoder maps (`quantise_model`); an exact1 MODEL may then be given, and its networks
    are requantised, its tables kept."""
    from . import data as datamod
    from . import modelfile, registry
    from .codec import match_model
    from .errors import AcnError
    from .fileio import check_writable
    check_writable(output, force)
    model = registry.load_model(model_path)
    if numerics not in ("exact1", "exact2"):
        raise AcnError(f"unknown numerics {numerics!r} (exact1 or exact2)")
    if model.numerics != "float32" and not (numerics == "exact2" and model.numerics == "exact1"):
        raise AcnError(f"{model_path}: already an exact model (numerics {model.numerics})")
    if model.numerics != "float32" and (tour_prior or prior_covariance != "diag"):
        raise AcnError(f"{model_path}: an exact model is requantised with its prior as it is")
    images = match_model(datamod.load(data, levels=model.spec.levels), model)
    if len(images) == 0:
        raise AcnError(f"{data}: no images to calibrate on")
    if tour_prior:
        from .train import refit_prior_to_tours
        model = refit_prior_to_tours(model, images, tour_prior, tour_prior_steps)
    prior = selection = None
    if prior_covariance != "diag":
        from .train import refit_unconditional
        prior, selection = refit_unconditional(model, images, prior_covariance)
    exact = quantise_model(model, calibration_set(images, n), prior, selection, numerics)
    # a requantised exact model keeps the record of its first quantisation beside this one
    key = "requantize_command" if model.numerics != "float32" else "quantize_command"
    exact.meta[key] = f"acncodec quantize {model_path} -o {output} --data {data}" + \
        (f" --images {n}" if n != CALIBRATION_IMAGES else "") + \
        (f" --prior-covariance {prior_covariance}" if prior_covariance != "diag" else "") + \
        (f" --tour-prior {tour_prior} --tour-prior-steps {tour_prior_steps}" if tour_prior else "") + \
        (f" --numerics {numerics}" if numerics != "exact1" else "")
    modelfile.save(exact, output)
    return exact
