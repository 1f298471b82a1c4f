"""What the latent codes represent (paper, sections 3.1 and 3.2; Table 3, Figure 14).

Small functions over a loaded `Model`:

* `sample`: z ~ p(z) (the unconditional prior), then x ~ r(x|z);
* `reconstruct`: x' ~ r(x|E(x)), decoded from the mean code;
* `daydream`: encode, z ~ p(z|code) (the ACN prior), decode by sampling, re-encode, repeat;
* `neighbours`: nearest other images in code space and in pixel space;
* `probe`: a linear classifier on codes, on pixels and on a PCA of the pixels (Table 3);
* `grid_png`: a PNG grid of rows of images, written atomically;
* `load_labels`: class labels of the built-in data sets, or of a labels file.

Every random draw comes from a generator seeded by the `seed` argument (separate streams for separate uses,
derived with numpy's SeedSequence), so the same seed, inputs, batch and torch thread settings give
bit-identical output. Images are uint8 level indices (N, H, W, C), like `ImageSet.images`.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import data as datamod
from .data import ImageSet, level_grid
from .errors import AcnError
from .evaluate import encode_all
from .fileio import atomic_write_bytes, check_writable
from .coding.raster import raster
from .incremental import IncrementalDecoder
from .train import to_tensor

SEPARATOR = 128       # grey of the 1-pixel lines between grid cells (and of empty cells)
MIN_CELL_PIXELS = 32  # grid_png's automatic upscale makes each image at least this tall
BATCH = 256           # images decoded at once


# ------------------------------------------------------------------------------------------------ helpers
def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent torch generator per (seed, use): one seed drives several uses without reusing draws."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _spec_tuple(model) -> tuple[int, int, int]:
    return model.spec.height, model.spec.width, model.spec.channels


def _levels_array(model, images) -> np.ndarray:
    """Images as the model's level indices (N, H, W, C) uint8: an `ImageSet` goes through `codec.match_model`
    (the documented 256 -> fewer-levels conversion); an array must already be on the model's grid."""
    if isinstance(images, ImageSet):
        from .codec import match_model
        return match_model(images, model).images
    a = np.asarray(images)
    if a.ndim == 3 and model.spec.channels == 1:  # (N, H, W) grey
        a = a[..., None]
    if a.ndim != 4 or a.shape[1:] != _spec_tuple(model):
        raise AcnError(f"images of shape {a.shape} do not fit the model, which is for {model.spec}")
    if a.dtype.kind not in "biu" or (a.size and (int(a.min()) < 0 or int(a.max()) >= model.spec.levels)):
        raise AcnError(f"images must be integer level indices 0..{model.spec.levels - 1} for {model.spec}")
    return a.astype(np.uint8)


def _codes(model, images: np.ndarray) -> torch.Tensor:
    return encode_all(model.net, to_tensor(images))


def _draw(logits: torch.Tensor, binary: bool, gen: torch.Generator) -> torch.Tensor:
    """One value per row: Bernoulli(sigmoid(logit)) for binary data, categorical over the levels otherwise."""
    if binary:
        return (torch.rand(logits.shape[0], generator=gen) < torch.sigmoid(logits[:, 0])).long()
    return torch.multinomial(F.softmax(logits.double(), -1), 1, generator=gen)[:, 0]


@torch.no_grad()
def _decode(model, z: torch.Tensor, gen: torch.Generator) -> np.ndarray:
    """Ancestral sampling of r(x|z): raster order, channels in order inside a pixel, batches of BATCH."""
    height, width, channels = _spec_tuple(model)
    net = model.net.decoder
    z = torch.as_tensor(z, dtype=torch.float32)
    out = np.empty((len(z), height, width, channels), dtype=np.uint8)
    for start in range(0, len(z), BATCH):
        zb = z[start:start + BATCH]
        x = raster(IncrementalDecoder(net, zb, width), len(zb), (channels, height, width),
                   lambda logits, i, j, c: _draw(logits, net.binary, gen).numpy())
        out[start:start + BATCH] = x.transpose(0, 2, 3, 1).astype(np.uint8)
    return out


def _sample_mixture(mix, gen: torch.Generator) -> torch.Tensor:
    """z (..., D) from independent per-dimension mixtures (..., D, M): a component per dimension by weight,
    then a Gaussian draw."""
    probs = mix.log_weights.exp().double()
    flat = probs.reshape(-1, probs.shape[-1])
    comp = torch.multinomial(flat, 1, generator=gen).view(probs.shape[:-1] + (1,))
    means = mix.means.gather(-1, comp)[..., 0]
    scales = mix.scales.gather(-1, comp)[..., 0]
    return means + scales * torch.randn(means.shape, generator=gen, dtype=means.dtype)


# -------------------------------------------------------------------------------------------- generation
def sample_pixels(model, z, seed: int = 0) -> np.ndarray:
    """x ~ r(x|z) for latents z (N, D): level indices (N, H, W, C) uint8."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    if z.ndim != 2 or z.shape[1] != model.config.latent_dim:
        raise AcnError(f"latents of shape {tuple(z.shape)} do not fit the model's {model.config.latent_dim} "
                       f"latent dimensions")
    return _decode(model, z, _generator(seed, 0))


def sample_prior(model, n: int, seed: int = 0) -> np.ndarray:
    """n latents (n, D) float32 from the unconditional prior p(z): a component by weight, then a Gaussian."""
    if n < 0:
        raise AcnError(f"cannot draw {n} samples")
    return model.unconditional.sample(n, _generator(seed, 1)).float().numpy()


def sample(model, n: int, seed: int = 0) -> np.ndarray:
    """n images (n, H, W, C) from the model: z ~ p(z), then x ~ r(x|z)."""
    return sample_pixels(model, sample_prior(model, n, seed), seed)


def reconstruct(model, images, seed: int = 0) -> np.ndarray:
    """Reconstructions x' ~ r(x|z = E(x)) of `images` (ImageSet or (N, H, W, C) level indices)."""
    x = _levels_array(model, images)
    return sample_pixels(model, _codes(model, x).numpy(), seed)


@torch.no_grad()
def daydream(model, image, steps: int, seed: int = 0) -> np.ndarray:
    """Repeated encode -> z ~ p(z|E(x)) -> x ~ r(x|z), starting from `image`.

    `image` (H, W, C) gives (steps + 1, H, W, C): the start, then each step's image. A batch (R, H, W, C)
    (or an ImageSet) runs R chains at once and gives (R, steps + 1, H, W, C); a chain's images then depend
    on the batch it ran in (the chains share one random stream).
    """
    if steps < 0:
        raise AcnError(f"daydream steps must be at least 0, got {steps}")
    single = not isinstance(image, ImageSet) and np.asarray(image).ndim == 3
    x = _levels_array(model, np.asarray(image)[None] if single else image)
    gen_prior, gen_pixels = _generator(seed, 2), _generator(seed, 0)
    chain = [x]
    for _ in range(steps):
        z = _sample_mixture(model.net.prior(_codes(model, x)), gen_prior)
        x = _decode(model, z, gen_pixels)
        chain.append(x)
    out = np.stack(chain, axis=1)  # (R, steps + 1, H, W, C)
    return out[0] if single else out


# -------------------------------------------------------------------------------------------- structure
def _pixel_features(images: np.ndarray, levels: int) -> np.ndarray:
    """Flattened pixels scaled to [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / (levels - 1)


def neighbours(model, images, queries, k: int = 8) -> dict:
    """For each query index, the k nearest *other* images: {"code": (Q, k), "pixel": (Q, k)} int64 indices,
    nearest first; Euclidean distance between codes E(x), and between pixels scaled to [0, 1]."""
    from .knn import nearest_others
    x = _levels_array(model, images)
    q = np.asarray(list(queries), dtype=np.int64).reshape(-1)
    if len(x) < 2:
        raise AcnError(f"neighbours need at least 2 images, got {len(x)}")
    if not 1 <= k < len(x):
        raise AcnError(f"k must be in 1..{len(x) - 1} for {len(x)} images, got {k}")
    bad = q[(q < 0) | (q >= len(x))]
    if len(bad):
        raise AcnError(f"query index {int(bad[0])} is out of range 0..{len(x) - 1}")
    codes = _codes(model, x).numpy()
    pixels = _pixel_features(x, model.spec.levels)
    return {"code": nearest_others(codes[q], q, codes, k).astype(np.int64),
            "pixel": nearest_others(pixels[q], q, pixels, k).astype(np.int64)}


def probe(model, train_images, train_labels, test_images, test_labels, pca_components: int = 16,
          seed: int = 0) -> dict:
    """Linear probe (Table 3): a standardised multinomial logistic regression fitted on the training set and
    scored on the test set, on (a) ACN codes E(x), (b) pixels scaled to [0, 1], (c) the first
    `pca_components` principal components of those pixels (PCA fitted on the training set).

    Returns {"accuracy": {"code", "pixels", "pca"} fractions, "converged": {...}, "dims": {...},
    "n_train", "n_test", "classes"}.
    """
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _levels_array(model, train_images), _levels_array(model, test_images)
    ytr, yte = np.asarray(train_labels).reshape(-1), np.asarray(test_labels).reshape(-1)
    for what, x, y in (("training", xtr, ytr), ("test", xte, yte)):
        if len(x) != len(y):
            raise AcnError(f"{len(y)} {what} labels for {len(x)} {what} images")
        if len(x) == 0:
            raise AcnError(f"no {what} images")
    if len(np.unique(ytr)) < 2:
        raise AcnError("the training labels have a single class; a classifier needs at least two")
    if pca_components < 1:
        raise AcnError(f"PCA components must be at least 1, got {pca_components}")
    levels = model.spec.levels
    ptr, pte = _pixel_features(xtr, levels), _pixel_features(xte, levels)
    n_pca = min(pca_components, ptr.shape[1], len(ptr))
    pca = PCA(n_components=n_pca, random_state=seed).fit(ptr)
    features = {"code": (_codes(model, xtr).numpy(), _codes(model, xte).numpy()),
                "pixels": (ptr, pte),
                "pca": (pca.transform(ptr), pca.transform(pte))}
    accuracy, converged, dims = {}, {}, {}
    for name, (ftr, fte) in features.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(ftr.astype(np.float64), ytr)
        accuracy[name] = float((clf.predict(fte.astype(np.float64)) == yte).mean())
        converged[name] = bool(np.all(clf[-1].n_iter_ < clf[-1].max_iter))
        dims[name] = int(ftr.shape[1])
    return {"accuracy": accuracy, "converged": converged, "dims": dims, "n_train": int(len(ytr)),
            "n_test": int(len(yte)), "classes": int(len(np.unique(ytr)))}


# -------------------------------------------------------------------------------------------------- grids
def grid_image(rows, levels: int, scale: int | None = None) -> np.ndarray:
    """Rows of images (each row a sequence of (H, W, C) level indices, or an (n, H, W, C) array) as one 8-bit
    picture (rows, columns, C): each image upscaled `scale` times (default: the smallest integer making it at
    least MIN_CELL_PIXELS tall), cells separated by 1-pixel grey lines, short rows padded with grey.

    Size: height = R * H * scale + (R - 1), width = K * W * scale + (K - 1), K the longest row's length."""
    rows = [np.asarray(r) for r in rows]
    rows = [r[None] if r.ndim == 3 else r for r in rows]
    cells = [im for r in rows for im in r]
    if not cells:
        raise AcnError("nothing to draw: no images")
    shape = cells[0].shape
    if len(shape) != 3 or shape[2] not in (1, 3) or any(im.shape != shape for im in cells):
        raise AcnError(f"grid images must all be (H, W, 1|3) of one size; got {sorted({im.shape for im in cells})}")
    if not 2 <= levels <= 256:
        raise AcnError(f"levels must be in 2..256, got {levels}")
    if any(int(im.min()) < 0 or int(im.max()) >= levels for im in cells):
        raise AcnError(f"grid images have values outside 0..{levels - 1}")
    h, w, c = shape
    s = max(1, math.ceil(MIN_CELL_PIXELS / h)) if scale is None else int(scale)
    if s < 1:
        raise AcnError(f"scale must be at least 1, got {scale}")
    lut = level_grid(levels) if levels < 256 else np.arange(256, dtype=np.uint8)
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h * s + 1) - 1, cols * (w * s + 1) - 1, c), SEPARATOR, dtype=np.uint8)
    for r, row in enumerate(rows):
        for k, im in enumerate(row):
            big = np.repeat(np.repeat(lut[im.astype(np.int64)], s, axis=0), s, axis=1)
            y, x = r * (h * s + 1), k * (w * s + 1)
            out[y:y + h * s, x:x + w * s] = big
    return out


def with_labels(picture: np.ndarray, row_labels: list[str], header: str | None = None) -> np.ndarray:
    """The grid with each row's label in a white margin at its left, and an optional header line above."""
    from PIL import ImageDraw, ImageFont
    font = ImageFont.load_default()
    rows = len(row_labels)
    row_height = (picture.shape[0] + 1) // rows
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    margin = max(measure.textlength(label, font=font) for label in row_labels) + 8
    top = 16 if header else 0
    mode = "L" if picture.shape[2] == 1 else "RGB"
    width = max(picture.shape[1] + int(margin), int(measure.textlength(header, font=font)) + 8 if header else 0)
    canvas = Image.new(mode, (width, picture.shape[0] + top), 255 if mode == "L" else (255, 255, 255))
    canvas.paste(Image.fromarray(picture[..., 0] if mode == "L" else picture), (int(margin), top))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if mode == "L" else (0, 0, 0)
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * row_height + row_height // 2), label, fill=ink, font=font, anchor="lm")
    if header:
        draw.text((4, 2), header, fill=ink, font=font)
    out = np.asarray(canvas, dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out


def grid_png(rows, levels: int, path, *, scale: int | None = None, force: bool = False,
             row_labels: list[str] | None = None, header: str | None = None) -> np.ndarray:
    """Write `grid_image(rows, levels, scale)` as a PNG (grey or RGB) to `path`, atomically (a temporary file in
    the same folder, then os.replace); an existing file is replaced only with force=True. With `row_labels`
    (one per row) and `header`, the grid says what its rows are. Returns the picture."""
    check_writable(path, force)
    picture = grid_image(rows, levels, scale)
    if row_labels is not None:
        picture = with_labels(picture, row_labels, header)
    buf = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[2] == 1 else picture).save(buf, format="PNG")
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise AcnError(f"{path}: cannot write PNG: {e}") from None
    return picture


# ------------------------------------------------------------------------------------------------- labels
_LABEL_MAGIC = 0x00000801  # IDX, unsigned bytes, 1 dimension
_MNIST_LABELS = "train-labels-idx1-ubyte"
_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def read_label_idx(path) -> np.ndarray:
    """An IDX labels file (plain or gzipped, detected by its magic bytes) as int64 (N,)."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as f:
            blob = f.read(8 + 10_000_000)
    except (OSError, EOFError, zlib.error) as e:
        raise AcnError(f"{path}: cannot read IDX labels file: {e}") from None
    if len(blob) < 8:
        raise AcnError(f"{path}: too short for an IDX header ({len(blob)} bytes)")
    magic, n = int.from_bytes(blob[:4], "big"), int.from_bytes(blob[4:8], "big")
    if magic != _LABEL_MAGIC:
        raise AcnError(f"{path}: not an IDX labels file (magic 0x{magic:08x}, expected 0x{_LABEL_MAGIC:08x})")
    if len(blob) - 8 != n:
        raise AcnError(f"{path}: truncated or corrupt: header says {n} labels, the file holds {len(blob) - 8}")
    return np.frombuffer(blob, np.uint8, offset=8).astype(np.int64)


def _read_label_array(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise AcnError(f"{path}: cannot read numpy file: {e}") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise AcnError(f"{path}: labels must be a .npy array of integers")
    a = np.squeeze(a) if a.ndim > 1 else a
    if a.ndim != 1 or a.dtype.kind not in "biu":
        raise AcnError(f"{path}: labels must be a 1-D integer array, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _find_label_file(folder: Path, stem: str) -> Path | None:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    return None


def is_builtin(source: str) -> bool:
    """Whether data.load reads `source` as a built-in name (an existing path always wins)."""
    return not Path(source).exists() and datamod.parse_builtin(source) is not None


def load_labels(source: str) -> np.ndarray:
    """Class labels (N,) int64: for a built-in data name (NAME[:SPLIT[:COUNT]], the same images data.load
    gives), or for a labels file: IDX (plain or gzipped) or .npy."""
    path = Path(source)
    if path.is_file():
        return _read_label_array(path) if path.suffix.lower() == ".npy" else read_label_idx(path)
    if path.exists():
        raise AcnError(f"{source}: labels must be a file (IDX or .npy), not a folder")
    found = datamod.parse_builtin(source)
    if found is None:
        raise AcnError(f"{source}: no such labels file, and not a built-in data set "
                       f"({', '.join(datamod._SPLITS)})")
    name, split, start, stop = found
    if name == "digits":
        from sklearn.datasets import load_digits
        labels, origin = load_digits().target.astype(np.int64), "scikit-learn digits"
    elif name == "fashion-mnist":
        folder = Path(os.environ.get("ACNCODEC_FASHION_MNIST_DIR", _FASHION_DIR))
        stem = ("t10k" if split == "test" else "train") + "-labels-idx1-ubyte"
        file = _find_label_file(folder, stem)
        if file is None:
            raise AcnError(f"fashion-mnist: {stem}.gz not found in {folder}; "
                           f"install it with: apt-get install dataset-fashion-mnist")
        labels, origin = read_label_idx(file), str(file)
        start, stop = 0, stop - start  # each split is its own file
    else:  # mnist, binarized-mnist: the labels file beside the images data.load uses
        images_file = datamod._find_mnist()
        file = _find_label_file(images_file.parent, _MNIST_LABELS)
        if file is None:
            raise AcnError(f"{name}: {_MNIST_LABELS}[.gz] not found beside {images_file}")
        labels, origin = read_label_idx(file), str(file)
        if len(labels) != 60000:
            raise AcnError(f"{file}: expected the 60,000 MNIST training labels, found {len(labels)}")
    if len(labels) < stop:
        raise AcnError(f"{source}: {origin} has only {len(labels)} labels, expected {stop}")
    return np.ascontiguousarray(labels[start:stop])


# ------------------------------------------------------------------------------------- command-line glue
def load_matched(model_path, data: str | None = None):
    """(model, images) for the commands: the model (a file or a shipped model's name), and DATA brought to its
    levels by codec.match_model (fails naming both specs on a mismatch). `images` is None without DATA."""
    from .codec import match_model
    from .registry import load_model
    model = load_model(model_path)
    return model, (None if data is None else match_model(datamod.load(data), model))


def chunk(images, columns: int) -> list:
    """A sequence of images as grid rows of at most `columns`."""
    return [images[i:i + columns] for i in range(0, len(images), max(1, columns))]
