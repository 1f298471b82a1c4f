"""A workload for tests/test_portability.py's fresh-process harness: the integer networks' outputs (codes, the
prior's raw outputs, full-pass logits at batch sizes 1, 7 and 64, and the incremental stepper's logits) of each
exact model in a folder, as one digest per model. The parent computes the same digests and compares."""

from pathlib import Path

import numpy as np


def network_outputs(model_path: str, inputs_path: str) -> list[np.ndarray]:
    from acncodec import modelfile
    from acncodec.coding.numerics import for_model
    nets = for_model(modelfile.load(model_path)).nets
    x = np.load(inputs_path)
    out = []
    for batch in (1, 7, 64):
        codes = nets.encoder(x[:batch])
        out += [codes, nets.prior(codes), nets.decoder.logits(x[:batch], codes)]
    stepper = nets.decoder.stepper(nets.encoder(x[:7]))
    xs = x[:7]
    _, channels, height, width = xs.shape
    for i in range(height):
        for j in range(width):
            out += [stepper.logits(i, j, c, xs[:, :, i, j]) for c in range(channels)]
            stepper.set_pixel(i, j, xs[:, :, i, j])
    return out


def network_digests(folder: str) -> dict[str, str]:
    from tests.test_portability import digest
    return {p.stem: digest(*network_outputs(str(p), str(p.with_suffix(".npy"))))
            for p in sorted(Path(folder).glob("*.acnm"))}
