"""Whether two datasets hold the same images, and how they were paired to say so.

Three ways to pair images: by file name (two folders: tour order changes the order, not the names), in
order (arrays), or as a set (an array archive in tour order comes back as a permutation of its input; every
image must be there as often as in the other dataset). `auto` picks by name for two folders and in order
otherwise, and falls back to the set when the order differs but the images do not, saying so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .data import ImageSet
from .errors import AcnError

MODES = ("auto", "name", "order", "set")


@dataclass(frozen=True)
class Comparison:
    """The outcome of a successful comparison: how many images, and how they were paired."""

    count: int
    mode: str          # "name", "order" or "set"
    reordered: bool    # set mode found the same images in another order

    def describe(self) -> str:
        how = {"name": "paired by file name", "order": "in the same order",
               "set": "as a set (" + ("the order differs" if self.reordered else "the order is the same") + ")"}
        return f"identical: {self.count} images, every pixel equal, compared {how[self.mode]}"


def _first_order_difference(expected: np.ndarray, actual: np.ndarray) -> int | None:
    for i, (x, y) in enumerate(zip(expected, actual)):
        if not np.array_equal(x, y):
            return i
    return None


def _set_difference(expected: ImageSet, actual: ImageSet) -> str | None:
    """None when both hold the same images the same number of times; else what is missing."""
    have = Counter(image.tobytes() for image in actual.images)
    for i, image in enumerate(expected.images):
        key = image.tobytes()
        if have[key] == 0:
            return f"image {i} of {expected.source} is not among the images of {actual.source}"
        have[key] -= 1
    return None


def compare_images(expected: ImageSet, actual: ImageSet, mode: str = "auto") -> Comparison:
    """Compare every pixel of two datasets; AcnError naming the first difference."""
    if mode not in MODES:
        raise AcnError(f"unknown comparison {mode!r}; choose one of {', '.join(MODES)}")
    if expected.spec != actual.spec:
        raise AcnError(f"{actual.source}: {actual.spec}, expected {expected.spec}")
    if len(expected) != len(actual):
        raise AcnError(f"{actual.source}: {len(actual)} images, expected {len(expected)}")
    named = expected.names is not None and actual.names is not None
    if mode == "name" or (mode == "auto" and named):
        if not named:
            raise AcnError("comparing by file name needs two folders; use --by order or --by set for arrays")
        lookup = dict(zip(actual.names, actual.images))
        for name, image in zip(expected.names, expected.images):
            if name not in lookup:
                raise AcnError(f"{actual.source}: {name} is missing")
            if not np.array_equal(lookup[name], image):
                raise AcnError(f"{actual.source}: {name} differs")
        return Comparison(len(expected), "name", False)
    if mode in ("order", "auto"):
        first = _first_order_difference(expected.images, actual.images)
        if first is None:
            return Comparison(len(expected), "order", False)
        if mode == "order":
            same_set = _set_difference(expected, actual) is None
            raise AcnError(f"{actual.source}: image {first} differs" + (
                " (the two hold the same images in another order: --by set)" if same_set else ""))
        if _set_difference(expected, actual) is None:
            return Comparison(len(expected), "set", True)
        raise AcnError(f"{actual.source}: image {first} differs, and the two do not hold the same images "
                       "in another order either")
    missing = _set_difference(expected, actual)
    if missing is not None:
        raise AcnError(missing)
    return Comparison(len(expected), "set", _first_order_difference(expected.images, actual.images) is not None)
