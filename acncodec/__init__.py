"""acncodec: lossless compression of image datasets with Associative Compression Networks."""

from .acn import ACN, ModelConfig
from .api import compress, decompress, estimate
from .data import DataSpec, ImageSet, export_png, load
from .errors import AcnError
from .modelfile import Model
from .registry import load_model, shipped
from .train import TrainConfig, train

__all__ = ["ACN", "AcnError", "DataSpec", "ImageSet", "Model", "ModelConfig", "TrainConfig", "compress",
           "decompress", "estimate", "export_png", "load", "load_model", "shipped", "train"]
