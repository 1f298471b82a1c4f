"""Copy trained model files into the package as its shipped reference models and write their index.

    python bench/ship_models.py digits=runs/ref/digits.acn binarized-mnist=runs/bmnist-L4K5.acn \
        mnist=runs/grey-mnist.acn fashion-mnist=runs/ref/fashion-mnist.acn \
        [binarized-mnist-exact1=OLD.acn fashion-mnist-exact1=OLD.acn]

Each model is re-saved in the current model-file format and must be at most 10 MB, all together at most 20 MB.
Exact models (`acncodec quantize`) are shipped with their integer networks only: their float network, for
training further, evaluating and estimating, is the one the integer maps stand for (`quantize.dequantised_state`).
The training (and quantisation) command is taken from each model's own record. NAME-exact1 entries are the
exact1 models an exact2 model of NAME superseded: shipped so that archives written with them still decode,
never chosen for new data (`registry.ShippedModel.superseded_by`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acncodec import modelfile, registry  # noqa: E402
from acncodec.fileio import atomic_write_bytes  # noqa: E402

MAX_BYTES, MAX_TOTAL = 10_000_000, 20_000_000

ABOUT = {
    "digits": ("scikit-learn digits, all 1,797 images (8x8, 17 grey levels)",
               "the embedded default; 8x8 images with 17 grey levels"),
    "binarized-mnist": ("binarized-mnist:train, MNIST training images 0..49,999 binarized with seed 0",
                        "binary 28x28 images (binarized MNIST)"),
    "mnist": ("mnist:train, MNIST training images 0..49,999 (8-bit grey)",
              "8-bit grey 28x28 images (grey MNIST)"),
    "fashion-mnist": ("fashion-mnist:train, the 60,000 Fashion-MNIST training images (8-bit)",
                      "8-bit grey 28x28 images (Fashion-MNIST)"),
}
SUPERSEDED = {f"{name}-exact1": name for name in ("binarized-mnist", "fashion-mnist")}
for _old, _new in SUPERSEDED.items():
    ABOUT[_old] = (ABOUT[_new][0], f"the exact1 model {_new} was before exact2: decodes the archives made with it")


def main(pairs: list[str]) -> int:
    registry.REFERENCE_DIR.mkdir(exist_ok=True)
    entries, total = [], 0
    for pair in pairs:
        name, _, src = pair.partition("=")
        if name not in ABOUT or not src:
            print(f"expected NAME=MODEL with NAME one of {', '.join(ABOUT)}, got {pair!r}", file=sys.stderr)
            return 2
        model = modelfile.load(src)
        file = f"{name}.acn"
        digest = modelfile.save(model, registry.REFERENCE_DIR / file, weights=False)
        size = (registry.REFERENCE_DIR / file).stat().st_size
        total += size
        print(f"{name}: {src} -> {file}, {size / 1e6:.2f} MB, hash {digest[:12]}")
        if size > MAX_BYTES:
            print(f"{name}: {size:,} bytes is over the {MAX_BYTES:,}-byte limit", file=sys.stderr)
            return 1
        trained_on, description = ABOUT[name]
        command = model.meta.get("command", "?")
        for step in ("quantize_command", "requantize_command"):
            if step in model.meta:
                command += "; " + model.meta[step]
        start = model.meta.get("initialised_from")
        while start:   # a name given to --init may since name another model: say which one it was, and so on
            command += f" (--init: model {start['hash'][:12]}, made by: {start.get('command')})"
            start = start.get("initialised_from")
        entries.append(registry.ShippedModel(name, file, digest, model.spec, trained_on, command,
                                             description, SUPERSEDED.get(name)).to_dict())
    if total > MAX_TOTAL:
        print(f"{total:,} bytes in all is over the {MAX_TOTAL:,}-byte limit", file=sys.stderr)
        return 1
    index = json.dumps({"models": entries}, indent=2) + "\n"
    atomic_write_bytes(registry.REFERENCE_DIR / registry.INDEX, index.encode())
    print(f"{len(entries)} models, {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
