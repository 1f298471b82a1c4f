"""Cached incremental decoding of the Gated PixelCNN (Ramachandran et al. 2017, "Fast Generation for
Convolutional Autoregressive Models").

Naive decoding runs the full network once per pixel. The architecture in `pixelcnn.py` makes most of that work
reusable:

* the vertical stack at row i reads only image rows < i, so all layers' vertical rows are computed once, at
  the first pixel of row i, from per-layer zero-padded copies of each layer's vertical *input* (only the kh
  rows the (kh, k) kernel needs are read);
* the horizontal stack at (i, j) reads row i at columns < j plus the vertical pre-activation at row i, so
  per layer only the last kw positions of that layer's horizontal input in the current row are needed; the v2h
  map and conditioning of the whole row are precomputed once per row;
* the conditioning maps depend only on z: computed once per decoder, read one row at a time;
* the output head for channel c needs only channel c's slice of `features`/`previous` and channel c's group of
  the grouped `logits` conv.

Per pixel this leaves, per layer, two small matmuls on (B, channels) vectors. The results agree with
`GatedPixelCNN.logits` to float tolerance, not bit for bit (different summation order): per docs/DESIGN.md
section 4 the encoder and decoder of a file must both use this path with the same batch shapes. Given the same
inputs, batch and thread settings, repeated runs are bit-identical (deterministic CPU ops, fixed call order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .pixelcnn import GatedPixelCNN, gate, scale_pixels


class IncrementalDecoder:
    """Pixel-by-pixel logits for a batch of B images decoded in raster order (row i, column j, channel c)."""

    def __init__(self, net: GatedPixelCNN, z: torch.Tensor, width: int):
        """z (B, latent_dim); net in eval mode. `width` is needed up front: even at row 0, deeper layers'
        vertical rows near the right edge depend on where the zero padding starts."""
        self.net = net
        self.levels = net.levels
        self.C = net.image_channels
        self.outputs = net.head.outputs
        self.B = z.shape[0]
        self.W = width
        self.kh, self.kw, self.half = net.layers[0].kh, net.layers[0].kw, net.layers[0].half
        with torch.no_grad():
            cond_map = net.condition_map(z)
            self.cond = [layer.conditioning(cond_map) for layer in net.layers]
            # Horizontal (1, kw) conv as one matmul on a contiguous (B, kw * Cin) window: weights laid out
            # (out, kw, Cin) to match the (B, W, Cin) row buffers.
            self.hw = [l.hconv.weight[:, :, 0, :].permute(0, 2, 1).reshape(l.hconv.out_channels, -1).t()
                       .contiguous() for l in net.layers]
            self.ow = [l.hout.weight[:, :, 0, 0].t().contiguous() for l in net.layers]
            # Output head, sliced per channel c: rows of `features`/`previous` feeding group c, and group c of
            # the grouped `logits` conv; `previous` keeps only its (masked-in) columns < c.
            head, hid, out = net.head, net.head.features.out_channels // self.C, self.outputs
            fw, fb = head.features.weight[:, :, 0, 0], head.features.bias
            pw = (head.previous.weight * head.mask)[:, :, 0, 0]
            lw, lb = head.logits.weight[:, :, 0, 0], head.logits.bias
            self.head_w = [(fw[c * hid:(c + 1) * hid].t().contiguous(), fb[c * hid:(c + 1) * hid],
                            pw[c * hid:(c + 1) * hid, :c].t().contiguous(),
                            lw[c * out:(c + 1) * out].t().contiguous(), lb[c * out:(c + 1) * out])
                           for c in range(self.C)]
        # Per-layer vertical inputs, zero-padded like `vertical_pre` (kh-1 rows on top, half columns each
        # side); rows are filled as decoding proceeds, so nothing at or below the current row is ever read.
        self.ins = [self.C] + [l.hout.out_channels for l in net.layers[:-1]]
        self.vin = [z.new_zeros(self.B, cin, 2 * self.kh, width + 2 * self.half) for cin in self.ins]
        self.row = -1       # row whose vertical stack is cached
        self.col = -1       # column whose top horizontal features are cached
        self.next = (0, 0)  # next pixel set_pixel expects

    # ----------------------------------------------------------------------------------------- per row
    def _grow(self, rows: int) -> None:
        """Give every vertical-input buffer at least `rows` padded rows (doubling: height is not known up
        front; the whole image is kept, which is small next to the model)."""
        for n, buf in enumerate(self.vin):
            if buf.shape[2] < rows:
                extra = buf.new_zeros(buf.shape[0], buf.shape[1], max(rows, 2 * buf.shape[2]) - buf.shape[2],
                                      buf.shape[3])
                self.vin[n] = torch.cat([buf, extra], dim=2)

    def _start_row(self, i: int) -> None:
        """All layers' vertical rows for row i, plus what the horizontal stack adds per column."""
        kh, half, W = self.kh, self.half, self.W
        self._grow(i + kh + 1)
        self.vrow = []
        for n, layer in enumerate(self.net.layers):
            cond_v, cond_h = self.cond[n]
            # padded row p holds input row p - (kh - 1): output row i reads padded rows i .. i + kh - 1
            v_pre = F.conv2d(self.vin[n][:, :, i:i + kh], layer.vconv.weight, layer.vconv.bias) \
                + cond_v[:, :, i:i + 1]
            if n + 1 < len(self.vin):
                self.vin[n + 1][:, :, i + kh - 1, half:half + W] = gate(v_pre)[:, :, 0]
            # everything in h_pre but the hconv matmul, so a pixel costs one addmm here
            vh = layer.v2h(v_pre) + cond_h[:, :, i:i + 1] + layer.hconv.bias[:, None, None]  # (B, 2C, 1, W)
            self.vrow.append(vh[:, :, 0].permute(2, 0, 1).contiguous())  # (W, B, 2C): one row per column
        # horizontal inputs of the current row, (B, kw-1 zero pads + W, Cin); column j lives at j + kw - 1
        z = self.cond[0][0]
        self.hin = [z.new_zeros(self.B, self.kw - 1 + W + 1, cin) for cin in self.ins]
        self.row, self.col = i, -1

    # --------------------------------------------------------------------------------------- per pixel
    def _stack(self, j: int) -> None:
        """relu of the top horizontal features at (row, j); shared by all channels of the pixel."""
        kw = self.kw
        h = None
        for n, layer in enumerate(self.net.layers):
            buf = self.hin[n]
            if n > 0:
                buf[:, j + kw - 1] = h
            window = buf[:, j:j + kw].reshape(self.B, -1)
            h_pre = torch.addmm(self.vrow[n][j], window, self.hw[n])
            out = torch.addmm(layer.hout.bias, gate(h_pre), self.ow[n])
            h = out if layer.first else out + buf[:, j + kw - 1]
        self.top = F.relu(h)
        self.col = j

    def logits(self, i: int, j: int, c: int, pixel: torch.Tensor) -> torch.Tensor:
        """Logits (B, outputs) for channel c of pixel (i, j). `pixel` (B, C) long holds the level values of
        channels < c at (i, j) (entries >= c are ignored). Callers go in raster order and call set_pixel for
        every pixel before moving on."""
        if (i, j) != self.next or not 0 <= c < self.C:
            raise ValueError(f"logits({i}, {j}, {c}) out of raster order: expected pixel {self.next}")
        with torch.no_grad():
            if self.row != i:
                self._start_row(i)
            if self.col != j:
                self._stack(j)
            fw, fb, pw, lw, lb = self.head_w[c]
            hidden = torch.addmm(fb, self.top, fw)
            if c > 0:
                hidden = hidden + scale_pixels(pixel[:, :c], self.levels) @ pw
            return torch.addmm(lb, F.relu(hidden), lw)

    def predict(self, i: int, j: int, c: int, pixel) -> torch.Tensor:
        """The stepper interface of `coding/raster.py` (pixel values may be a numpy array): the logits."""
        return self.logits(i, j, c, torch.as_tensor(pixel))

    def set_pixel(self, i: int, j: int, values) -> None:
        """Record the true levels `values` (B, C) of pixel (i, j), after its logits, before the next."""
        values = torch.as_tensor(values)
        if (i, j) != self.next or self.col != j or self.row != i:
            raise ValueError(f"set_pixel({i}, {j}) out of order: expected {self.next} after its logits")
        with torch.no_grad():
            xs = scale_pixels(values, self.levels)  # (B, C)
            # layer 0 reads the image shifted right (horizontal) and down (vertical) by one
            self.hin[0][:, j + 1 + self.kw - 1] = xs
            self.vin[0][:, :, i + 1 + self.kh - 1, self.half + j] = xs
        self.next = (i, j + 1) if j + 1 < self.W else (i + 1, 0)


def naive_logits(net: GatedPixelCNN, x_partial: torch.Tensor, z: torch.Tensor, i: int, j: int, c: int,
                 pixel: torch.Tensor) -> torch.Tensor:
    """Baseline: one full parallel pass for channel c of pixel (i, j). `x_partial` (B, C, H, W) holds the
    pixels decoded before (i, j) (later ones are ignored by causality); `pixel` (B, C) has channels < c."""
    with torch.no_grad():
        x = x_partial.clone()
        x[:, :c, i, j] = pixel[:, :c]
        return net.logits(x, z)[:, c, :, i, j]
