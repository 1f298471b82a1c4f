"""Run in a fresh process by tests/test_exact_networks.py, under another CPU setting: decode each archive of
FOLDER with its exact model, recompute the networks' integer outputs, and compare both with what the parent
process wrote. Prints one line per mismatch; exits 1 if there was any.

Usage: python tests/exact_check.py FOLDER
"""

import sys
from pathlib import Path

import numpy as np
import torch

from acncodec import codec, modelfile
from acncodec.coding.numerics import for_model


def check(folder: Path) -> list[str]:
    problems = []
    for model_path in sorted(folder.glob("*.acn")):
        name = model_path.stem
        model = modelfile.load(model_path)
        ref = np.load(folder / f"{name}.npz")
        decoded, _ = codec.decompress((folder / f"{name}.bin").read_bytes(), model, progress=False)
        if not np.array_equal(decoded.images, ref["decoded"]):
            problems.append(f"{name}: decoded pixels differ")
        pm = for_model(model)
        x = torch.from_numpy(ref["x"])
        for batch in (1, 7, 64):
            codes = pm.nets.encoder(x[:batch])
            outputs = {"codes": codes, "raw": pm.nets.prior(codes), "logits": pm.nets.decoder.logits(x[:batch], codes)}
            for key, value in outputs.items():
                if not np.array_equal(value.numpy(), ref[key][:batch]):
                    problems.append(f"{name}: {key} differ at batch {batch}")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1]))
    print("\n".join(found) or f"ok ({torch.get_num_threads()} threads)")
    sys.exit(1 if found else 0)
