"""The one raster stepping loop: pixels in row order, columns in order, channels in order inside a pixel.

A stepper has `predict(i, j, c, pixel)` (the prediction for channel c of pixel (i, j), given `pixel`
(B, C) holding channels < c) and `set_pixel(i, j, pixel)`. `pick(prediction, i, j, c)` chooses the value:
the true pixel (the sender's replay), a pop from the stack (the receiver) or a random draw (sampling).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def raster(stepper, batch: int, shape: tuple[int, int, int], pick: Callable) -> np.ndarray:
    """Run the stepper over every pixel; returns the picked values (B, C, H, W) int64."""
    channels, height, width = shape
    x = np.zeros((batch, channels, height, width), dtype=np.int64)
    for i in range(height):
        for j in range(width):
            pixel = np.zeros((batch, channels), dtype=np.int64)
            for c in range(channels):
                pixel[:, c] = pick(stepper.predict(i, j, c, pixel), i, j, c)
            stepper.set_pixel(i, j, pixel)
            x[:, :, i, j] = pixel
    return x
