"""Turning whatever the user points at into one uint8 (N, H, W, C) array, and back to PNGs.

Every codec path works on ``ImageSet``: the model only needs the shape and the number of
grey levels, so every input kind is reduced to that here and every input problem becomes
an ``AcnError`` that names the file, before any modelling starts.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from acncodec.errors import AcnError
from acncodec.fileio import write_folder
from acncodec.names import check_names

_MODES = {"1": (1, 2), "L": (1, 256), "RGB": (3, 256)}  # Pillow mode -> (channels, levels)
_IDX_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_MNIST_FILE = "train-images-idx3-ubyte"
_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
# name -> {split: (start, stop)}, default split first; the mnist test split is never trained on.
_MNIST_SPLITS = {"all": (0, 60000), "train": (0, 50000), "test": (50000, 60000)}
_SPLITS = {"digits": {"all": (0, 1797), "train": (0, 1497), "test": (1497, 1797)},
           "mnist": _MNIST_SPLITS, "binarized-mnist": _MNIST_SPLITS,
           "fashion-mnist": {"test": (0, 10000), "train": (0, 60000)}}
_ACCEPTED = ("accepted: a folder of images, a .npy or .npz file (file.npz:KEY), an IDX file "
             "(plain or gzipped), or a built-in NAME[:SPLIT[:COUNT]] with NAME one of "
             + ", ".join(_SPLITS))


@dataclass(frozen=True)
class DataSpec:
    """What a model must agree on with the data; stored in models and archives."""

    height: int
    width: int
    channels: int
    levels: int  # 2 binary, 17 digits, 256 8-bit

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 1 or self.channels not in (1, 3) \
                or not 2 <= self.levels <= 256:
            raise ValueError(f"invalid data spec {self.to_dict()}")

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width,
                "channels": self.channels, "levels": self.levels}

    @classmethod
    def from_dict(cls, d, where: str = "data spec") -> "DataSpec":
        """Parse untrusted JSON; ``where`` names the file it came from for the error."""
        keys = ("height", "width", "channels", "levels")
        if not isinstance(d, dict) or set(d) != set(keys) \
                or any(type(d[k]) is not int for k in keys):
            raise AcnError(f"{where}: invalid data spec {d!r}, expected integers {keys}")
        try:
            return cls(**{k: d[k] for k in keys})
        except ValueError as e:
            raise AcnError(f"{where}: {e}") from None

    def __str__(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}, {self.levels} levels"


@dataclass
class ImageSet:
    """Images plus what is needed to write them back: the level count and file names."""

    images: np.ndarray  # uint8 (N, H, W, C), values in [0, levels)
    levels: int
    names: list[str] | None  # file names (relative to the folder) for folder input
    source: str  # human-readable origin, for messages
    levels_from_values: bool = False  # arrays declare no bit depth: `levels` was guessed from the values

    def __post_init__(self) -> None:
        a = self.images
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, H, W, 1|3), got {a.dtype} {a.shape}")
        if self.names is not None and len(self.names) != len(a):
            raise ValueError(f"{len(self.names)} names for {len(a)} images")

    @property
    def spec(self) -> DataSpec:
        _, h, w, c = self.images.shape
        return DataSpec(h, w, c, self.levels)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        names = "" if self.names is None else f", names {self.names[0]!r}..."
        return f"ImageSet({n} images, {h}x{w}x{c}, {self.levels} levels{names}, from {self.source!r})"


def level_grid(levels: int) -> np.ndarray:
    """8-bit value of each level k: round-half-up of k*255/(levels-1), in integers so that
    export_png and fit_levels agree bit for bit on every machine."""
    k = np.arange(levels, dtype=np.int64)
    return ((2 * 255 * k + (levels - 1)) // (2 * (levels - 1))).astype(np.uint8)


def binarize(images_256: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fixed stochastic binarisation, pixel ~ Bernoulli(grey/255), as in the literature.

    One PCG64 uniform double per pixel in C order; drawn in chunks (the stream is the same
    as one big draw) so 60,000 MNIST images don't need a 376 MB float array.
    """
    flat = np.ascontiguousarray(images_256, dtype=np.uint8).reshape(-1)
    threshold = np.arange(256, dtype=np.float64) / 255.0
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty(flat.shape, dtype=np.uint8)
    step = 1 << 22
    for i in range(0, flat.size, step):
        out[i:i + step] = rng.random(min(step, flat.size - i)) < threshold[flat[i:i + step]]
    return out.reshape(np.shape(images_256))


_binarize = binarize  # load() has a keyword of the same name


def fit_levels(images: ImageSet, levels: int) -> ImageSet:
    """Map 8-bit data back onto an L-level grid: the exact inverse of export_png's scaling,
    so e.g. digits exported to PNG and read back match a 17-level model."""
    if images.levels == levels:
        return images
    if images.levels != 256 or not 2 <= levels <= 256:
        raise AcnError(f"{images.source}: cannot convert {images.levels}-level data "
                       f"to {levels} levels (only 256 -> fewer is supported)")
    grid = level_grid(levels)
    lut = np.full(256, 255, dtype=np.uint8)  # 255: off the grid (levels < 256 here)
    lut[grid] = np.arange(levels, dtype=np.uint8)
    out = lut[images.images]
    if (out == 255).any():
        v = int(images.images[out == 255][0])
        raise AcnError(f"{images.source}: the data have values off the {levels}-level grid "
                       f"(e.g. {v}; allowed: {', '.join(map(str, grid[:4]))}, ...)")
    return ImageSet(out, levels, images.names, images.source)


def read_idx(path) -> np.ndarray:
    """Read an IDX image file (MNIST format) as uint8 (N, H, W); gzip is detected by its
    magic bytes because downloaded files are often renamed. Sizes are checked against
    the header before any array is built, so a corrupt header can't ask for gigabytes."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            header = f.read(16)
            if len(header) < 16:
                raise AcnError(f"{path}: too short for an IDX header ({len(header)} bytes)")
            magic, n, h, w = (int.from_bytes(header[i:i + 4], "big") for i in (0, 4, 8, 12))
            if magic != _IDX_MAGIC:
                raise AcnError(f"{path}: not an IDX image file (magic 0x{magic:08x}, "
                               f"expected 0x{_IDX_MAGIC:08x})")
            size = n * h * w
            if size == 0:
                raise AcnError(f"{path}: IDX header says {n} images of {h}x{w}: no pixels")
            if h * w > MAX_IMAGE_PIXELS:
                raise AcnError(f"{path}: IDX header says images of {h}x{w} pixels, larger than acncodec codes "
                               f"(at most {MAX_IMAGE_PIXELS:,} pixels per image)")
            if gzipped:
                payload = f.read(size + 1)  # at most one byte past what the header claims
                got = len(payload) if len(payload) <= size else f"more than {size}"
            else:
                got = os.path.getsize(path) - 16
            if got != size:
                raise AcnError(f"{path}: truncated or corrupt: header says {n} images of "
                               f"{h}x{w} ({size} bytes), the file holds {got}")
            data = np.frombuffer(payload, np.uint8) if gzipped \
                else np.fromfile(f, np.uint8, count=size)
    except (OSError, EOFError, zlib.error) as e:
        raise AcnError(f"{path}: cannot read IDX file: {e}") from None
    return data.reshape(n, h, w)


MAX_IMAGE_PIXELS = 1 << 20   # per image (1024 x 1024): far beyond what an ACN codes; refused before decoding


def _open_image_file(path: Path):
    """A regular file opened for reading; a FIFO, device or socket is refused without blocking on it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AcnError(f"{path}: is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _image_header(path: Path) -> tuple[str, tuple[int, int], int]:
    """Mode, size and frame count, read from the file's header without decoding its pixels."""
    try:
        with warnings.catch_warnings():   # the size is checked below, against a far smaller limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_image_file(path) as f, Image.open(f) as im:
                return im.mode, im.size, getattr(im, "n_frames", 1)
    except AcnError:
        raise
    except Image.DecompressionBombError:
        raise AcnError(f"{path}: is larger than acncodec codes (at most {MAX_IMAGE_PIXELS:,} pixels per "
                       f"image)") from None
    except Exception as e:  # Pillow raises many types for unreadable files
        raise AcnError(f"{path}: not an image Pillow can read ({e})") from None


def _load_folder(folder: Path, shape: tuple[int, int, int] | None = None) -> ImageSet:
    try:
        # Hidden files and subfolders are skipped; files and symbolic links are read (a broken link is an
        # error naming it, not a silent omission).
        names = sorted(e.name for e in os.scandir(folder)
                       if not e.name.startswith(".") and (e.is_file() or e.is_symlink()) and not e.is_dir())
    except OSError as e:
        raise AcnError(f"{folder}: cannot list folder: {e}") from None
    if not names:
        raise AcnError(f"{folder}: folder has no image files")
    # Every file's header first: mixed sizes, huge images or the wrong shape are refused before any pixel is
    # decoded.
    first = None
    for name in names:
        path = folder / name
        mode, size, frames = _image_header(path)
        if mode not in _MODES:
            raise AcnError(f"{path}: image mode {mode} is not accepted (accepted: 1 (binary), L (grey), RGB)")
        if frames != 1:
            raise AcnError(f"{path}: has {frames} frames; only single images are accepted")
        if first is None:
            first = (name, mode, size)
            if size[0] * size[1] > MAX_IMAGE_PIXELS:
                raise AcnError(f"{path}: {size[0]}x{size[1]} pixels is larger than acncodec codes (at most "
                               f"{MAX_IMAGE_PIXELS:,} pixels per image)")
            found = (size[1], size[0], _MODES[mode][0])
            if shape is not None and found != tuple(shape):
                raise AcnError(f"{path}: images are {found[0]}x{found[1]}x{found[2]} but the model is for "
                               f"{shape[0]}x{shape[1]}x{shape[2]}")
        elif mode != first[1]:
            raise AcnError(f"{path}: mode {mode} differs from mode {first[1]} of {first[0]}")
        elif size != first[2]:
            raise AcnError(f"{path}: size {size[0]}x{size[1]} differs from "
                           f"{first[2][0]}x{first[2][1]} of {first[0]}")
    channels = _MODES[first[1]][0]
    out = np.empty((len(names), first[2][1], first[2][0], channels), dtype=np.uint8)
    for i, name in enumerate(names):
        path = folder / name
        try:
            with _open_image_file(path) as f, Image.open(f) as im:
                if (im.mode, im.size) != first[1:]:
                    raise AcnError(f"{path}: changed while it was read")
                im.load()
                out[i] = np.asarray(im, dtype=np.uint8).reshape(out.shape[1:])
        except AcnError:
            raise
        except Exception as e:  # Pillow raises many types for unreadable files
            raise AcnError(f"{path}: not an image Pillow can read ({e})") from None
    return ImageSet(out, _MODES[first[1]][1], names, str(folder))


def _from_array(a, where: str) -> ImageSet:
    """Arrays carry no bit depth, so the level count is inferred from the values."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biu":
        raise AcnError(f"{where}: array dtype {getattr(a, 'dtype', type(a))} is not integer")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[3] not in (1, 3) or 0 in a.shape:
        raise AcnError(f"{where}: array shape {a.shape} is not (N, H, W) or (N, H, W, C) "
                       f"with C 1 or 3 and no empty axis")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 255:
        raise AcnError(f"{where}: values {lo}..{hi} are outside 0..255")
    return ImageSet(a.astype(np.uint8, copy=False), 2 if hi <= 1 else 256, None, where, levels_from_values=True)


def from_array(a, where: str = "array", levels: int | None = None) -> ImageSet:
    """An (N, H, W) or (N, H, W, C) integer array as an ImageSet; `levels` as in ``load``."""
    images = _from_array(a, where)
    return set_levels(images, levels) if levels is not None else images


def set_levels(images: ImageSet, levels: int) -> ImageSet:
    """The data as `levels`-level data. An array's values are level indices when all lie below `levels`
    (digits as scikit-learn holds them: 0..16 for 17 levels); otherwise 8-bit values on the `levels`-level
    grid are mapped to it (digits saved as PNG: 0, 16, 32, ..., 255)."""
    if images.levels == levels:
        return images
    if not 2 <= levels <= 256:
        raise AcnError(f"{images.source}: levels must be in 2..256, got {levels}")
    if images.levels_from_values and int(images.images.max()) < levels:
        return ImageSet(images.images, levels, images.names, images.source)
    return fit_levels(images, levels)


def declare_levels(images: ImageSet, levels: int) -> ImageSet:
    """The data declared to have `levels` levels, values unchanged so that they come back as they were: an
    array's values below `levels` become level indices; 8-bit values must lie on the `levels`-level grid (a
    model for `levels` maps them to it and decompress maps them back)."""
    if images.levels == levels:
        return images
    if images.levels_from_values and int(images.images.max()) < levels:
        return ImageSet(images.images, levels, images.names, images.source)
    fit_levels(images, levels)   # a clear error when the values are off the grid
    return images


def npy_bytes(images: ImageSet) -> bytes:
    """The .npy file of an array archive: (N, H, W) for grey, (N, H, W, 3) for colour."""
    arr = images.images[..., 0] if images.images.shape[-1] == 1 else images.images
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def load_bytes(blob: bytes, where: str = "<stdin>", levels: int | None = None) -> ImageSet:
    """A .npy or .npz file's bytes (standard input); an .npz must hold exactly one array."""
    try:
        a = np.load(io.BytesIO(blob), allow_pickle=False)
        if isinstance(a, np.lib.npyio.NpzFile):
            with a:
                if len(a.files) != 1:
                    raise AcnError(f"{where}: holds arrays {list(a.files)}; give one array on standard input")
                a = a[a.files[0]]
    except (OSError, ValueError, EOFError) as e:
        raise AcnError(f"{where}: not a .npy or .npz file ({e})") from None
    return from_array(a, where, levels)


def _load_numpy(path: Path, key: str | None = None) -> ImageSet:
    """.npy, or one array of an .npz: the only one, or the one named by ``file.npz:KEY``."""
    try:
        # No pickles: an array file must not run code. A .npy is mapped, not read: compress reads a shard's
        # images at a time, so a large dataset need not fit in memory twice.
        a = np.load(path, allow_pickle=False, mmap_mode="r")
        if isinstance(a, np.lib.npyio.NpzFile):
            with a:
                keys = list(a.files)
                if key is None and len(keys) != 1:
                    raise AcnError(f"{path}: holds arrays {keys}; choose one with {path}:KEY")
                if key is None or key in keys:
                    return _from_array(a[key or keys[0]], f"{path}:{key or keys[0]}")
                raise AcnError(f"{path}: no array named {key!r} (has {keys})")
    except (OSError, ValueError, EOFError) as e:
        raise AcnError(f"{path}: cannot read numpy file: {e}") from None
    return _from_array(a, str(path))


def _find_mnist() -> Path:
    """Env var first so CI and users can point elsewhere; then the shared dev copy."""
    dirs = [Path(d) for d in [os.environ.get("ACNCODEC_MNIST_DIR")] if d]
    dirs += [Path.cwd() / "../shared/data/mnist",
             Path(__file__).resolve().parents[2] / "shared/data/mnist"]
    for d in dirs:
        for name in (_MNIST_FILE, _MNIST_FILE + ".gz"):
            if (d / name).is_file():
                return (d / name).resolve()
    raise AcnError(f"mnist: {_MNIST_FILE}[.gz] not found in ACNCODEC_MNIST_DIR or "
                   + ", ".join(str(d) for d in dirs))


def _builtin_images(name: str, split: str) -> tuple[np.ndarray, str]:
    """The whole data set a split is cut from, and where it came from."""
    if name == "digits":
        from sklearn.datasets import load_digits  # slow import; only when asked for
        return load_digits().images.astype(np.uint8)[..., None], "scikit-learn digits"
    if name == "fashion-mnist":
        d = Path(os.environ.get("ACNCODEC_FASHION_MNIST_DIR", _FASHION_DIR))
        stem = "t10k" if split == "test" else "train"
        for path in (d / f"{stem}-images-idx3-ubyte.gz", d / f"{stem}-images-idx3-ubyte"):
            if path.is_file():
                return read_idx(path)[..., None], str(path)
        raise AcnError(f"fashion-mnist: {stem}-images-idx3-ubyte.gz not found in {d}; "
                       f"install it with: apt-get install dataset-fashion-mnist")
    path = _find_mnist()
    images = read_idx(path)[..., None]
    if len(images) != 60000:  # the splits are defined on the standard training file
        raise AcnError(f"{path}: expected the 60,000 MNIST training images, found {len(images)}")
    if name == "binarized-mnist":  # binarise the whole set once, so splits are views of it
        images = binarize(images, seed=0)
    return images, str(path)


def parse_builtin(source: str) -> tuple[str, str, int, int] | None:
    """NAME[:SPLIT[:COUNT]] -> (name, split, start, stop) within the split's source; None if not a built-in.

    Shared by the image and label loaders, so both always cut the same images.
    """
    name, *rest = source.split(":")
    if name not in _SPLITS or len(rest) > 2:
        return None
    splits = _SPLITS[name]
    if len(rest) == 1 and rest[0].isdigit():  # NAME:COUNT
        rest = [next(iter(splits)), rest[0]]
    split = rest[0] if rest else next(iter(splits))
    if split not in splits:
        raise AcnError(f"{source}: unknown split {split!r} for {name} (has {', '.join(splits)})")
    start, stop = splits[split]
    if len(rest) == 2:
        if not rest[1].isdigit() or not 0 < int(rest[1]) <= stop - start:
            raise AcnError(f"{source}: COUNT must be 1..{stop - start}, got {rest[1]!r}")
        stop = start + int(rest[1])
    return name, split, start, stop


def _load_builtin(source: str) -> ImageSet | None:
    found = parse_builtin(source)
    if found is None:
        return None
    name, split, start, stop = found
    images, origin = _builtin_images(name, split)
    if name == "fashion-mnist":  # each split is its own file
        start, stop = 0, stop - start
    if len(images) < stop:
        raise AcnError(f"{source}: {origin} has only {len(images)} images, expected {stop}")
    levels = {"digits": 17, "binarized-mnist": 2}.get(name, 256)
    return ImageSet(np.ascontiguousarray(images[start:stop]), levels, None,
                    f"{source} ({origin}, images {start}..{stop - 1})")


def _load_any(source: str, shape: tuple[int, int, int] | None = None) -> ImageSet:
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, shape)
    if path.is_file():
        if path.suffix.lower() in (".npy", ".npz"):
            return _load_numpy(path)
        return ImageSet(read_idx(path)[..., None], 256, None, str(path))
    base, _, key = source.rpartition(":")
    if base.lower().endswith(".npz") and Path(base).is_file():
        return _load_numpy(Path(base), key)
    found = _load_builtin(source)
    if found is None:
        raise AcnError(f"{source}: no such file or folder, and not a built-in data set; {_ACCEPTED}")
    return found


def load(source: str, *, binarize: bool = False, levels: int | None = None,
         shape: tuple[int, int, int] | None = None) -> ImageSet:
    """Load any accepted input kind; ``binarize`` and ``levels`` adapt it to a model's spec.

    IDX and image files declare their bit depth (IDX and 'L'/'RGB' are 256 levels, mode '1'
    is 2); .npy/.npz do not, so there 2 levels if every value is 0/1, else 256, unless ``levels``
    says otherwise (see set_levels); a model's automatic choice also reads them as level indices. ``shape``
    (height, width, channels), when the model is already known, lets a folder of other images be
    refused before their pixels are decoded.
    """
    images = _load_any(str(source), shape)
    if binarize:
        if images.levels != 256:
            raise AcnError(f"{images.source}: binarizing needs 256-level data, "
                           f"these have {images.levels} levels")
        images = ImageSet(_binarize(images.images), 2, images.names,
                          images.source + ", binarized")
    return set_levels(images, levels) if levels is not None else images


def _png_names(n: int, names: list[str] | None, folder: Path) -> list[str]:
    """Default names sort in image order, so loading the folder gives the same order."""
    if names is None:
        width = max(5, len(str(n - 1)))
        return [f"{i:0{width}d}.png" for i in range(n)]
    if len(names) != n:
        raise AcnError(f"{folder}: {len(names)} names given for {n} images")
    return check_names(names, str(folder))


def _to_pil(image: np.ndarray, levels: int) -> Image.Image:
    """Binary grey images are written as 1-bit PNGs (mode '1'): they load back as 2 levels
    directly. Everything else is 8-bit 'L'/'RGB' on the level grid; fit_levels undoes it."""
    if levels == 2 and image.shape[2] == 1:
        return Image.fromarray(image[..., 0].astype(bool))
    pixels = image if levels == 256 else level_grid(levels)[image]
    return Image.fromarray(pixels[..., 0] if image.shape[2] == 1 else pixels)


def export_png(images: ImageSet, folder: str | Path, *, names: list[str] | None = None,
               force: bool = False, keep: list[Path] = ()) -> list[str]:
    """Write one PNG per image into `folder` (see fileio.write_folder: a new folder appears whole; in an
    existing one other files are left alone and files of the same name are replaced only with `force`)."""
    folder = Path(folder)
    if int(images.images.max(initial=0)) >= images.levels:
        raise AcnError(f"{images.source}: values exceed {images.levels} levels")
    out_names = _png_names(len(images), names, folder)

    def write(tmp: Path) -> None:
        for image, name in zip(images.images, out_names):
            try:
                _to_pil(image, images.levels).save(tmp / name, format="PNG")
            except OSError as e:
                raise AcnError(f"{folder}: cannot write PNGs: {e.strerror or e}") from None

    write_folder(folder, out_names, write, force=force, keep=keep)
    return out_names
