"""The Python API: estimate, compress and decompress with a shipped model, then train a model of your own.

    python examples/python_api.py [--steps 300] [--images 500]

It took 389 s on this project's two shared CPU cores (`python bench/timings.py`, record
bench/results/timings.json); it writes nothing outside a temporary folder.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import acncodec

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300, help="training steps for the model of your own")
parser.add_argument("--images", type=int, default=500, help="how many digits to use")
args = parser.parse_args()

# A plain array, as scikit-learn holds its digits (values 0..16): levels=17 says what the values are.
digits = load_digits().images.astype(np.uint8)[:args.images]
blob, report = acncodec.compress(digits, levels=17, order="original")
restored, _ = acncodec.decompress(blob)
assert np.array_equal(restored.images[..., 0], digits)
print(f"array: {len(blob):,} bytes = {report['bits_per_dim']:.4f} bits/dim; xz -9 "
      f"{report['baseline']['bits_per_dim']:.4f} bits/dim on the same pixels")

# Any dataset: a folder of images, an array file, or a built-in name (here 500 of scikit-learn's digits).
images = acncodec.load(f"digits:{args.images}")
print(images, f"acncodec {acncodec.__version__}")

# The shipped models, and the one that fits these data (chosen when no model is given).
for entry in acncodec.shipped():
    print(f"shipped: {entry.name:16} {entry.spec}")

# The paper's Table 2 for these data, in nats per image.
table = acncodec.estimate(images)
print(f"estimate: ordered <= {table['ordered']:.2f}, unordered {table['unordered']:.2f} nats/image")

# Compress and decompress: bytes out, the same pixels back (in the order mode auto picked, so compare as
# sorted sets).
blob, report = acncodec.compress(images)
print(f"archive: {len(blob):,} bytes = {report['bits_per_dim']:.4f} bits/dim "
      f"(estimate {report['estimate_bits_per_dim']:.4f})")
restored, header = acncodec.decompress(blob)
same = np.array_equal(np.sort(restored.images.reshape(len(restored), -1), axis=0),
                      np.sort(images.images.reshape(len(images), -1), axis=0))
print(f"restored {len(restored)} images, exact: {same}")
assert same and len(restored) == len(images)

# Order kept: the original order, latents under the unconditional prior.
blob_original, _ = acncodec.compress(images, order="original")
restored_original, _ = acncodec.decompress(blob_original)
assert np.array_equal(restored_original.images, images.images)
print(f"original order: {len(blob_original):,} bytes, restored in order")

# A model of your own: Algorithm 1, then p(z) and the bucket table; the model file is written atomically.
with tempfile.TemporaryDirectory() as tmp:
    model = acncodec.train(images, Path(tmp) / "mine.acn",
                           acncodec.ModelConfig(decoder_layers=3, decoder_kernel=3, prior_hidden=128),
                           acncodec.TrainConfig(steps=args.steps), progress=False)
    blob_mine, report_mine = acncodec.compress(images, model)
    restored_mine, _ = acncodec.decompress(blob_mine, model)
    assert len(restored_mine) == len(images)
    print(f"own model ({args.steps} steps): {len(blob_mine):,} bytes = {report_mine['bits_per_dim']:.4f} bits/dim")
