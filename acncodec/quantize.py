"""Post-training quantisation of the ACN's networks into integer networks (numerics "exact1").

Every value on the coding path is an integer, held in a float64 tensor, standing for value / 2^frac. Why that
is exact on every machine (Balle, Johnston, Minnen 2019, "Integer networks for data compression with
latent-variable models"):

* a linear map (matmul, or a convolution done as im2col + matmul) of integer weights and integer activations
  is computed exactly by float64 hardware in any summation order, blocking, thread split or FMA use, as long
  as every partial sum stays below 2^53. Each map clamps its input to a bound fixed at quantisation time and
  `IntAffine.check_bound` proves fan_in * max|w| * bound + max|bias| < 2^53 for it;
* rescaling multiplies by an exact power of two and rounds with floor(x + 0.5): exact in float64;
* tanh and sigmoid come from integer tables (`FunctionTable`) computed once here with float math and stored in
  the model file; at coding time they are read with integer-only linear interpolation. ReLU, clamps, adds of
  aligned integers and the products of the gates (both factors below 2^15) are exact.

Formats: hidden activations use `act_frac` fractional bits; each affine map has its own weight format, the
most fractional bits that keep |w| < 2^15 (16-bit weights) and its accumulator bound; outputs leave in the
formats the coding tables expect (codes at `code_frac`, the prior's raw outputs at `raw_frac` with the means at
`code_frac`, pixel logits at `logit_frac`). Input bounds are calibrated on training images (the float
network's largest |activation| per map, times `MARGIN`).

Two passes share every rounded term: the full pass (`IntDecoder.logits`) and the incremental stepper
(`IntStepper`) compute each affine map's rounded output from the same inputs, so their integer logits are
identical (tests/test_exact_networks.py), whatever the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .acn import ACN

EXACT_LIMIT = 2.0 ** 53
WEIGHT_LIMIT = 2 ** 15          # |integer weight| < 2^15: 16-bit weights
MARGIN = 2.0                    # calibrated activation bounds are widened by this factor before clamping
ACT_FRAC = 14                   # hidden activations: 2^-14 resolution
TANH_RANGE, SIGMOID_RANGE = 8, 16   # beyond these |x| the functions are saturated below 2^-22
TABLE_STEP_FRAC = 7             # table knots every 2^-7 of the input, linearly interpolated


def rescale(acc: torch.Tensor, shift) -> torch.Tensor:
    """round(acc / 2^shift), halves rounded up; exact for integer acc below 2^53 (power-of-two scaling)."""
    if isinstance(shift, torch.Tensor):
        return torch.floor(acc * torch.pow(2.0, -shift) + 0.5)
    return torch.floor(acc * 2.0 ** -shift + 0.5)


def align(x: torch.Tensor, frac_from: int, frac_to: int) -> torch.Tensor:
    """An integer activation moved from one format to another (exact when gaining bits)."""
    return x * 2.0 ** (frac_to - frac_from) if frac_to >= frac_from else rescale(x, frac_from - frac_to)


def to_int(x, frac: int) -> torch.Tensor:
    return torch.floor(torch.as_tensor(x, dtype=torch.float64) * 2.0 ** frac + 0.5)


class IntAffine:
    """y = round((W x + b) / 2^shift) with integer W (out, fan_in), b at in_frac + w_frac; x clamped to
    |x| <= bound first, unless `clamp` is False because the input is bounded by construction (a gate's output
    or a pixel, |x| <= 1). `shift` may differ per output (a tensor), for outputs leaving in different formats.

    The rounding is folded into the accumulator: round(a / 2^s) (halves up) = floor((a + 2^(s-1)) / 2^s),
    so one fused matmul-add, one multiply by 2^-s and one floor: three calls per map on the hot path."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, shift, bound: float, clamp: bool = True):
        self.weight = weight.double()
        self.weight_t = self.weight.t().contiguous()
        self.bias = bias.double()
        self.shift = (shift if isinstance(shift, torch.Tensor) else torch.tensor(float(shift))).double()
        self.bound = float(bound)
        self.clamp = bool(clamp)
        half = torch.where(self.shift >= 1, torch.pow(2.0, self.shift - 1), torch.zeros_like(self.shift))
        self.bias_rounding = (self.bias + half).contiguous()
        inv = torch.pow(2.0, -self.shift)
        self.inv = float(inv) if inv.dim() == 0 else inv

    def sliced(self, rows=slice(None), cols=slice(None), clamp: bool | None = None) -> "IntAffine":
        """The map restricted to some outputs and inputs (the unused inputs held at zero)."""
        shift = self.shift if self.shift.dim() == 0 else self.shift[rows]
        return IntAffine(self.weight[rows, cols], self.bias[rows], shift, self.bound,
                         self.clamp if clamp is None else clamp)

    @classmethod
    def quantise(cls, weight: torch.Tensor, bias: torch.Tensor | None, in_frac: int, out_frac,
                 in_bound_real: float, bounded: bool = False) -> "IntAffine":
        """weight (out, fan_in) float; out_frac an int or a per-output tensor of ints. `bounded`: the input
        never exceeds 1 in magnitude (bound 2^in_frac exactly, no clamp needed)."""
        weight = weight.detach().double()
        bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
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

    def check_bound(self) -> None:
        worst = self.weight.shape[1] * float(self.weight.abs().max()) * self.bound \
            + float(self.bias_rounding.abs().max())
        if not worst < EXACT_LIMIT:
            raise ValueError(f"integer layer may exceed 2^53 in its accumulator ({worst:.3g})")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., fan_in) integers -> (..., out) integers."""
        if self.clamp:
            x = x.clamp(-self.bound, self.bound)
        if x.dim() == 2:
            acc = torch.addmm(self.bias_rounding, x, self.weight_t)
        else:
            acc = torch.matmul(x, self.weight_t).add_(self.bias_rounding)
        return acc.mul_(self.inv).floor_()

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias, f"{prefix}.shift": self.shift,
                f"{prefix}.bound": torch.tensor(self.bound, dtype=torch.float64),
                f"{prefix}.clamp": torch.tensor(self.clamp)}

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "IntAffine":
        return cls(d[f"{prefix}.weight"], d[f"{prefix}.bias"], d[f"{prefix}.shift"].double(),
                   float(d[f"{prefix}.bound"]), bool(d[f"{prefix}.clamp"]))


class FunctionTable:
    """f at knots lo + k 2^-step_frac (k = 0..n), as integers at out_frac; read for integer inputs at in_frac
    by clamping to [lo, -lo] and interpolating linearly between knots with integer arithmetic."""

    def __init__(self, values: torch.Tensor, half_range: int, in_frac: int, step_frac: int):
        self.values = values.double()
        self.half_range, self.in_frac, self.step_frac = half_range, in_frac, step_frac
        self.lo = half_range * 2 ** in_frac
        self.step = 2.0 ** (in_frac - step_frac)
        # Expanded once, at load, to every input at in_frac by the same integer interpolation: a lookup is
        # then one gather.
        self.dense = self._interpolate(torch.arange(-self.lo, self.lo + 1, dtype=torch.float64))

    @classmethod
    def build(cls, fn, half_range: int, in_frac: int, out_frac: int, step_frac: int = TABLE_STEP_FRAC):
        knots = torch.arange(-half_range * 2 ** step_frac, half_range * 2 ** step_frac + 2,
                             dtype=torch.float64) * 2.0 ** -step_frac     # one extra knot past the end
        return cls(to_int(fn(knots), out_frac), half_range, in_frac, step_frac)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense[x.clamp(-self.lo, self.lo).add_(self.lo).long()]

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clamp(-self.lo, self.lo) + self.lo
        k = torch.floor(u / self.step)                 # step is a power of two: exact
        r = u - k * self.step
        k = k.long()
        lo, hi = self.values[k], self.values[k + 1]
        return lo + rescale((hi - lo) * r, self.in_frac - self.step_frac)

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}.values": self.values,
                f"{prefix}.format": torch.tensor([self.half_range, self.in_frac, self.step_frac])}

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "FunctionTable":
        half_range, in_frac, step_frac = (int(v) for v in d[f"{prefix}.format"])
        return cls(d[f"{prefix}.values"], half_range, in_frac, step_frac)


# ------------------------------------------------------------------------------------------ convolutions
def conv(x: torch.Tensor, aff: IntAffine, kernel: tuple[int, int], stride: int = 1) -> torch.Tensor:
    """A convolution of an already padded integer input (N, Cin, H, W) as im2col + matmul (no transforming
    algorithm such as Winograd or FFT can be picked) -> (N, out, Ho, Wo)."""
    n, _, h, w = x.shape
    ho, wo = (h - kernel[0]) // stride + 1, (w - kernel[1]) // stride + 1
    cols = F.unfold(x, kernel, stride=stride).transpose(1, 2)           # (N, L, Cin*kh*kw)
    return aff(cols).transpose(1, 2).reshape(n, -1, ho, wo)


def pointwise(x: torch.Tensor, aff: IntAffine) -> torch.Tensor:
    """A 1x1 convolution (N, Cin, H, W) -> (N, out, H, W)."""
    return aff(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_transpose_as_conv(weight: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d weight (in, out, k, k) as the equivalent Conv2d weight on the zero-stuffed input."""
    return weight.transpose(0, 1).flip(2, 3)


def upsample_conv(x: torch.Tensor, aff: IntAffine, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """ConvTranspose2d as zero insertion, padding by kernel - 1 - padding, and a plain convolution."""
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, (h - 1) * stride + 1, (w - 1) * stride + 1)
    stuffed[:, :, ::stride, ::stride] = x
    p = kernel - 1 - padding
    return conv(F.pad(stuffed, (p, p, p, p)), aff, (kernel, kernel))


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
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                xb = x[s:s + batch]
                codes = net.encoder(xb)
                net.prior(codes)
                net.decoder.logits(xb, codes + torch.randn_like(codes))
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

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pixel_in[x.long()]
        for aff, stride in zip(self.convs, self.strides):
            h = torch.relu(conv(F.pad(h, (1, 1, 1, 1)), aff, (3, 3), stride))
        h = h.flatten(1)
        h = torch.relu(self.fc[0](h))
        return self.fc[1](h)

    def to_dict(self, p: str) -> dict:
        d = {f"{p}.strides": torch.tensor(self.strides)}
        for k, a in enumerate(self.convs):
            d.update(a.to_dict(f"{p}.conv{k}"))
        for k, a in enumerate(self.fc):
            d.update(a.to_dict(f"{p}.fc{k}"))
        return d

    @classmethod
    def from_dict(cls, d: dict, p: str, pixel_in, act_frac):
        strides = [int(s) for s in d[f"{p}.strides"]]
        return cls(pixel_in, [IntAffine.from_dict(d, f"{p}.conv{k}") for k in range(len(strides))], strides,
                   [IntAffine.from_dict(d, f"{p}.fc{k}") for k in range(2)], act_frac)


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

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        c = align(codes.double(), self.code_frac, self.act_frac)
        h1 = self.tanh(self.layers["h1"](c))
        h2 = self.tanh(self.layers["h2"](torch.cat([h1, c], -1)))
        h3 = self.tanh(self.layers["h3"](torch.cat([h2, c], -1)))
        raw = self.layers["out"](torch.cat([c, h1, h2, h3], -1))
        return raw.view(len(codes), self.dims[0], self.dims[1], 3)

    def to_dict(self, p: str) -> dict:
        d = {f"{p}.dims": torch.tensor(self.dims)}
        for name, a in self.layers.items():
            d.update(a.to_dict(f"{p}.{name}"))
        return d

    @classmethod
    def from_dict(cls, d, p, tanh, act_frac, code_frac):
        return cls({n: IntAffine.from_dict(d, f"{p}.{n}") for n in cls.NAMES}, tanh, act_frac, code_frac,
                   tuple(int(v) for v in d[f"{p}.dims"]))


class IntGatedLayer:
    KEYS = ("vconv", "hconv", "v2h", "hout", "cond")

    def __init__(self, maps: dict, first: bool, kernel: int):
        self.maps, self.first = maps, first
        self.kh = self.kw = kernel // 2 + 1
        self.half = kernel // 2
        self.kernel = kernel


class IntDecoder:
    """The Gated PixelCNN in integers; logits at logit_frac. `logits` is the full pass; `stepper` the
    incremental one; both compute the same rounded terms."""

    def __init__(self, pixel_in, cmap: dict, cmap_dims, layers: list[IntGatedLayer], head: dict,
                 tanh: FunctionTable, sigmoid: FunctionTable, act_frac: int, code_frac: int, shape, outputs: int):
        self.pixel_in, self.cmap, self.cmap_dims, self.layers, self.head = pixel_in, cmap, cmap_dims, layers, head
        self.tanh, self.sigmoid, self.act_frac, self.code_frac = tanh, sigmoid, act_frac, code_frac
        self.C, self.H, self.W = shape
        self.outputs = outputs
        hid = cmap_dims[3]
        # the output head sliced per channel c (hidden units c*hid .. (c+1)*hid; `previous` reads channels < c)
        self.features_c = [head["features"].sliced(slice(c * hid, (c + 1) * hid)) for c in range(self.C)]
        self.previous_c = [None] + [head["previous"].sliced(slice(c * hid, (c + 1) * hid), slice(0, c))
                                    for c in range(1, self.C)]
        self.gate_half = torch.tensor(2.0 ** (act_frac - 1), dtype=torch.float64)
        self.gate_inv = 2.0 ** -act_frac
        # Both gate halves read from one table, so a gate costs one gather: tanh evaluated on sigmoid's
        # (wider) input range, where it is the same function (its table clamps its own input), then sigmoid.
        lo = sigmoid.lo
        span = torch.arange(-lo, lo + 1, dtype=torch.float64)
        self.gate_lo, self.gate_table = lo, torch.cat([tanh(span), sigmoid(span)])
        self._gate_offsets: dict = {}

    @classmethod
    def quantise(cls, dec, bounds, tanh, sigmoid, act_frac, code_frac, logit_frac, pixel_in):
        b = lambda n: bounds[f"decoder.{n}"]
        cm = dec.condition_map
        up0, up1 = cm.up[1], cm.up[3]
        cmap = {"fc": IntAffine.quantise(cm.fc.weight, cm.fc.bias, code_frac, act_frac, b("condition_map.fc")),
                "up0": IntAffine.quantise(_flat_t(up0), up0.bias, act_frac, act_frac, b("condition_map.up.1")),
                "up1": IntAffine.quantise(_flat_t(up1), up1.bias, act_frac, act_frac, b("condition_map.up.3"))}
        layers = []
        for k, layer in enumerate(dec.layers):
            # bounded by construction: gate outputs (hout; vconv above layer 0) and pixels (layer 0's convs)
            bounded = {"hout", "vconv"} | ({"hconv"} if k == 0 else set())
            maps = {key: IntAffine.quantise(_flat(getattr(layer, key)), getattr(layer, key).bias, act_frac,
                                            act_frac, b(f"layers.{k}.{key}"), key in bounded)
                    for key in IntGatedLayer.KEYS}
            layers.append(IntGatedLayer(maps, layer.first, layer.vconv.kernel_size[1]))
        h = dec.head
        hid = h.features.out_channels // dec.image_channels
        logits_w = _flat(h.logits)
        head = {"features": IntAffine.quantise(_flat(h.features), h.features.bias, act_frac, act_frac,
                                               b("head.features")),
                "logits": [IntAffine.quantise(logits_w[c * h.outputs:(c + 1) * h.outputs], 
                                              h.logits.bias[c * h.outputs:(c + 1) * h.outputs],
                                              act_frac, logit_frac, b("head.logits"))
                           for c in range(dec.image_channels)]}
        if dec.image_channels > 1:
            head["previous"] = IntAffine.quantise(_flat(h.previous) * h.mask[:, :, 0, 0], None, act_frac,
                                                  act_frac, 1.0, bounded=True)
        shape = (dec.image_channels, cm.height, cm.width)
        return cls(pixel_in, cmap, (cm.hidden, cm.h0, cm.w0, hid), layers, head, tanh, sigmoid, act_frac,
                   code_frac, shape, h.outputs)

    # --------------------------------------------------------------------------------------- shared parts
    def gate(self, pre: torch.Tensor, dim: int) -> torch.Tensor:
        """tanh(a) sigmoid(b) for pre = [a, b] along `dim`, rounded to act_frac."""
        key = (pre.shape[dim], pre.dim() - dim)
        offsets = self._gate_offsets.get(key)
        if offsets is None:   # index of input 0 in each half's table, shaped to broadcast along `dim`
            half = pre.shape[dim] // 2
            offsets = torch.tensor([self.gate_lo] * half + [self.gate_lo + 2 * self.gate_lo + 1] * half,
                                   dtype=torch.float64).view(-1, *([1] * (pre.dim() - dim - 1)))
            self._gate_offsets[key] = offsets
        values = self.gate_table[(pre.clamp(-self.gate_lo, self.gate_lo) + offsets).long()]
        a, b = values.chunk(2, dim=dim)
        return torch.addcmul(self.gate_half, a, b).mul_(self.gate_inv).floor_()

    def condition(self, z: torch.Tensor) -> list:
        """Per layer, the (cond_v, cond_h) maps (B, 2C, H, W) from latents z at code_frac."""
        hidden, h0, w0, _ = self.cmap_dims
        grid = torch.relu(self.cmap["fc"](z.double()).view(len(z), hidden, h0, w0))
        grid = torch.relu(upsample_conv(grid, self.cmap["up0"], 4, 2, 1))
        cmap = upsample_conv(grid, self.cmap["up1"], 4, 2, 1)[:, :, :self.H, :self.W]
        return [pointwise(cmap, l.maps["cond"]).chunk(2, dim=1) for l in self.layers]

    def head_hidden(self, top: torch.Tensor, c: int) -> torch.Tensor:
        """Channel c's hidden units from relu(top features) (..., channels) -> (..., hid)."""
        return self.features_c[c](top)

    def previous(self, xs: torch.Tensor, c: int) -> torch.Tensor:
        """Channel c's contribution from the scaled values xs (..., C) of channels < c."""
        return self.previous_c[c](xs[..., :c])

    # --------------------------------------------------------------------------------------- full pass
    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x level indices (N, C, H, W), z (N, D) at code_frac -> integer logits (N, C, outputs, H, W)."""
        xs = self.pixel_in[x.long()]
        v = F.pad(xs, (0, 0, 1, 0))[:, :, :-1, :]
        h = F.pad(xs, (1, 0, 0, 0))[:, :, :, :-1]
        for layer, (cond_v, cond_h) in zip(self.layers, self.condition(z)):
            m = layer.maps
            v_pre = conv(F.pad(v, (layer.half, layer.half, layer.kh - 1, 0)), m["vconv"], (layer.kh, layer.kernel)) \
                + cond_v
            h_pre = conv(F.pad(h, (layer.kw - 1, 0, 0, 0)), m["hconv"], (1, layer.kw)) \
                + pointwise(v_pre, m["v2h"]) + cond_h
            out = pointwise(self.gate(h_pre, 1), m["hout"])
            h = out if layer.first else out + h
            v = self.gate(v_pre, 1)
        top = torch.relu(h).permute(0, 2, 3, 1)                    # (N, H, W, channels)
        xl = xs.permute(0, 2, 3, 1)
        out = []
        for c in range(self.C):
            hidden = self.head_hidden(top, c)
            if c > 0:
                hidden = hidden + self.previous(xl, c)
            out.append(self.head["logits"][c](torch.relu(hidden)))   # (N, H, W, outputs)
        return torch.stack(out, 1).permute(0, 1, 4, 2, 3)

    def stepper(self, z: torch.Tensor) -> "IntStepper":
        return IntStepper(self, z)

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

    @classmethod
    def from_dict(cls, d, p, pixel_in, tanh, sigmoid, act_frac, code_frac):
        dims = [int(v) for v in d[f"{p}.dims"]]
        C, H, W, outputs = dims[4:]
        cmap = {n: IntAffine.from_dict(d, f"{p}.cmap.{n}") for n in ("fc", "up0", "up1")}
        layers = [IntGatedLayer({n: IntAffine.from_dict(d, f"{p}.layer{k}.{n}") for n in IntGatedLayer.KEYS},
                                bool(first), int(kernel)) for k, (first, kernel) in enumerate(d[f"{p}.layers"].tolist())]
        head = {"features": IntAffine.from_dict(d, f"{p}.head.features"),
                "logits": [IntAffine.from_dict(d, f"{p}.head.logits{c}") for c in range(C)]}
        if C > 1:
            head["previous"] = IntAffine.from_dict(d, f"{p}.head.previous")
        return cls(pixel_in, cmap, tuple(dims[:4]), layers, head, tanh, sigmoid, act_frac, code_frac,
                   (C, H, W), outputs)


def _flat_t(module) -> torch.Tensor:
    return conv_transpose_as_conv(module.weight.detach()).reshape(module.weight.shape[1], -1)


class _NumpyAffine:
    """An IntAffine for one (B, fan_in) row at a time in numpy: the same integers (exact sums below 2^53 in
    any order), with a fraction of torch's per-call overhead, which dominates a pixel step's small products."""

    def __init__(self, aff: "IntAffine"):
        self.weight_t = aff.weight_t.numpy()
        self.bias = aff.bias_rounding.numpy()
        self.inv = aff.inv if isinstance(aff.inv, float) else aff.inv.numpy()
        self.bound, self.clamp = aff.bound, aff.clamp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.clamp:   # two ufuncs: np.clip's Python wrapper costs more than the clamp itself here
            x = np.minimum(np.maximum(x, -self.bound), self.bound)
        acc = x @ self.weight_t
        acc += self.bias
        acc *= self.inv
        return np.floor(acc, out=acc)


class IntStepper:
    """Incremental decoding of the integer decoder (the same caching as `incremental.py`): per row, every
    layer's vertical stack and the horizontal stack's row terms (torch); per pixel, one window matmul per
    layer (numpy: the step's products are small, so the calls' own cost is what counts)."""

    def __init__(self, dec: IntDecoder, z: torch.Tensor):
        self.dec = dec
        self.B, self.C, self.W = z.shape[0], dec.C, dec.W
        l0 = dec.layers[0]
        self.kh, self.kw, self.half = l0.kh, l0.kw, l0.half
        self.cond = dec.condition(z)
        self.ins = [self.C] + [l.maps["hout"].weight.shape[0] for l in dec.layers[:-1]]
        self.vin = [torch.zeros(self.B, cin, dec.H + self.kh, self.W + 2 * self.half, dtype=torch.float64)
                    for cin in self.ins]
        # hconv weight (out, Cin * 1 * kw) reordered to read a (B, kw, Cin) window flattened
        self.hconv, self.hout = [], []
        for l, cin in zip(dec.layers, self.ins):
            a = l.maps["hconv"]
            weight = a.weight.view(-1, cin, l.kw).permute(0, 2, 1).reshape(a.weight.shape[0], -1)
            self.hconv.append(_NumpyAffine(IntAffine(weight, a.bias, a.shift, a.bound, a.clamp)))
            self.hout.append(_NumpyAffine(l.maps["hout"]))
        self.features = [_NumpyAffine(a) for a in dec.features_c]
        self.previous = [None] + [_NumpyAffine(a) for a in dec.previous_c[1:]]
        self.head_logits = [_NumpyAffine(a) for a in dec.head["logits"]]
        self.pixel_in = dec.pixel_in.numpy()
        self.gate_table, self.gate_lo = dec.gate_table.numpy(), dec.gate_lo
        self.gate_half, self.gate_inv = float(dec.gate_half), dec.gate_inv
        self._gate_offsets: dict = {}
        self.row, self.col, self.next = -1, -1, (0, 0)

    def _gate(self, pre: np.ndarray) -> np.ndarray:
        """IntDecoder.gate along the last axis of (..., 2C), in numpy."""
        width = pre.shape[-1]
        offsets = self._gate_offsets.get(width)
        if offsets is None:
            half = width // 2
            offsets = np.array([self.gate_lo] * half + [3 * self.gate_lo + 1] * half, dtype=np.float64)
            self._gate_offsets[width] = offsets
        idx = np.minimum(np.maximum(pre, -self.gate_lo), self.gate_lo)
        idx += offsets
        values = self.gate_table[idx.astype(np.int64)]
        half = width // 2
        out = values[..., :half] * values[..., half:]
        out += self.gate_half
        out *= self.gate_inv
        return np.floor(out, out=out)

    def _start_row(self, i: int) -> None:
        kh, half, W = self.kh, self.half, self.W
        self.vrow = []
        for n, layer in enumerate(self.dec.layers):
            cond_v, cond_h = self.cond[n]
            m = layer.maps
            v_pre = conv(self.vin[n][:, :, i:i + kh], m["vconv"], (kh, layer.kernel)) + cond_v[:, :, i:i + 1]
            if n + 1 < len(self.vin):   # the gate along channels, in numpy: (B, W, 2C) -> (B, W, C)
                gated = self._gate(v_pre[:, :, 0].permute(0, 2, 1).numpy())
                self.vin[n + 1][:, :, i + kh - 1, half:half + W] = torch.from_numpy(gated).permute(0, 2, 1)
            vh = pointwise(v_pre, m["v2h"]) + cond_h[:, :, i:i + 1]
            self.vrow.append(vh[:, :, 0].permute(2, 0, 1).contiguous().numpy())     # (W, B, 2C)
        self.hin = [np.zeros((self.B, self.kw - 1 + W + 1, cin)) for cin in self.ins]
        self.row, self.col = i, -1

    def _stack(self, j: int) -> None:
        kw, h = self.kw, None
        for n, layer in enumerate(self.dec.layers):
            buf = self.hin[n]
            if n > 0:
                buf[:, j + kw - 1] = h
            h_pre = self.hconv[n](buf[:, j:j + kw].reshape(self.B, -1))
            h_pre += self.vrow[n][j]
            out = self.hout[n](self._gate(h_pre))
            h = out if layer.first else out + buf[:, j + kw - 1]
        self.top = np.maximum(h, 0.0)
        self.col = j

    def logits_np(self, i: int, j: int, c: int, pixel) -> np.ndarray:
        """Integer logits (B, outputs) of channel c at (i, j) as float64 numpy; pixel (B, C) holds channels < c."""
        if (i, j) != self.next or not 0 <= c < self.C:
            raise ValueError(f"logits({i}, {j}, {c}) out of raster order: expected pixel {self.next}")
        if self.row != i:
            self._start_row(i)
        if self.col != j:
            self._stack(j)
        hidden = self.features[c](self.top)
        if c > 0:
            xs = self.pixel_in[np.asarray(pixel, dtype=np.int64)]
            hidden += self.previous[c](xs[..., :c])
        return self.head_logits[c](np.maximum(hidden, 0.0))

    def logits(self, i: int, j: int, c: int, pixel) -> torch.Tensor:
        """Integer logits (B, outputs) of channel c at (i, j); pixel (B, C) holds channels < c."""
        return torch.from_numpy(self.logits_np(i, j, c, pixel))

    def set_pixel(self, i: int, j: int, values) -> None:
        if (i, j) != self.next or self.col != j or self.row != i:
            raise ValueError(f"set_pixel({i}, {j}) out of order: expected {self.next} after its logits")
        xs = self.pixel_in[np.asarray(values, dtype=np.int64)]
        self.hin[0][:, j + self.kw] = xs
        self.vin[0][:, :, i + self.kh, self.half + j] = torch.from_numpy(xs)
        self.next = (i, j + 1) if j + 1 < self.W else (i + 1, 0)


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

    @classmethod
    def from_dict(cls, d: dict) -> "IntNetworks":
        act, code, raw, logit = (int(v) for v in d["formats"])
        pixel_in = d["pixel_in"].double()
        tanh, sigmoid = FunctionTable.from_dict(d, "tanh"), FunctionTable.from_dict(d, "sigmoid")
        return cls(IntEncoder.from_dict(d, "encoder", pixel_in, act),
                   IntPrior.from_dict(d, "prior", tanh, act, code),
                   IntDecoder.from_dict(d, "decoder", pixel_in, tanh, sigmoid, act, code),
                   {"act_frac": act, "code_frac": code, "raw_frac": raw, "logit_frac": logit})


def quantise_networks(net: ACN, calibration: torch.Tensor, code_frac: int, raw_frac: int, logit_frac: int,
                      act_frac: int = ACT_FRAC) -> IntNetworks:
    """Integer networks from a float ACN, bounds calibrated on images `calibration` (N, C, H, W) levels."""
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
                                           pixel_in),
                       {"act_frac": act_frac, "code_frac": code_frac, "raw_frac": raw_frac,
                        "logit_frac": logit_frac})


def quantise_model(model, calibration: torch.Tensor):
    """A model with numerics "exact1": the float model's networks quantised (bounds calibrated on images
    `calibration` (N, C, H, W) levels, a few hundred training images), and its bucket and head tables as
    integers. The float weights stay in the file (training and evaluation use them); coding uses only the
    integer parts."""
    from .coding import exact_tables
    from .coding.exact_numerics import join_parts
    from .modelfile import Model
    nets = quantise_networks(model.net, calibration, exact_tables.CODE_FRAC, exact_tables.RAW_FRAC,
                             exact_tables.LOGIT_FRAC)
    latent = exact_tables.LatentTables.build(model.buckets, model.unconditional)
    pixel = exact_tables.PixelTables.build(model.spec.levels)
    meta = dict(model.meta, quantised_from=model.hash, calibration_images=int(len(calibration)))
    return Model(model.net, model.spec, model.unconditional, model.buckets, meta, model.head, "exact1",
                 join_parts(nets, latent, pixel))


#: Calibration images by default: a few hundred, spread evenly over the training data.
CALIBRATION_IMAGES = 256


def calibration_set(images, n: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """n images (N, C, H, W) level indices spread evenly over an ImageSet already at the model's levels."""
    pick = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(images.images[pick].transpose(0, 3, 1, 2)).astype(np.int64))


def quantise_file(model_path, data, output, n: int = CALIBRATION_IMAGES, force: bool = False):
    """`acncodec quantize`: read a model, calibrate on DATA (training images), write the exact model."""
    from . import data as datamod
    from . import modelfile, registry
    from .codec import match_model
    from .errors import AcnError
    from .fileio import check_writable
    check_writable(output, force)
    model = registry.load_model(model_path)
    if model.numerics == "exact1":
        raise AcnError(f"{model_path}: already an exact model (numerics exact1)")
    images = match_model(datamod.load(data, levels=model.spec.levels), model)
    if len(images) == 0:
        raise AcnError(f"{data}: no images to calibrate on")
    exact = quantise_model(model, calibration_set(images, n))
    modelfile.save(exact, output)
    return exact
