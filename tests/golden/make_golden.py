"""Write the golden archives: one small archive per data kind, with its tiny model and its input.

    python tests/golden/make_golden.py

Run only when the archive format or the numerics change on purpose; tests/test_golden.py then checks that
every committed archive still decodes to its exact pixels and that compressing its input again gives the
same payload.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from helpers import SPECS, random_images, tiny_model  # noqa: E402

from acncodec import codec, modelfile  # noqa: E402

#: kind -> (spec name, images, names?, order, chains)
CASES = {"binary": ("binary", 12, False, "tour", 3), "levels17": ("digits-like", 10, False, "original", 2),
         "grey": ("grey", 9, False, "tour", 2), "rgb": ("rgb", 7, False, "tour", 2),
         "folder": ("binary", 8, True, "tour", 2)}


def main() -> None:
    for kind, (spec_name, n, names, order, chains) in CASES.items():
        spec = SPECS[spec_name]
        model = tiny_model(spec, seed=3)
        images = random_images(spec, n, seed=5, names=names)
        blob, _ = codec.compress(images, model, order=order, chains=chains, progress=False, estimate=False)
        modelfile.save(model, HERE / f"{kind}.acn")
        (HERE / f"{kind}.acnz").write_bytes(blob)
        np.savez(HERE / f"{kind}-input.npz", images=images.images,
                 names=np.array(images.names if names else [], dtype=str))
        print(f"{kind}: {len(blob)} bytes")


if __name__ == "__main__":
    main()
