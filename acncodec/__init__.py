"""acncodec: lossless compression of image datasets with Associative Compression Networks."""

from .acn import ACN, ModelConfig
from .data import DataSpec, ImageSet, export_png, load
from .errors import AcnError
from .modelfile import Model
from .modelfile import load as load_model
from .train import TrainConfig, train

__all__ = ["ACN", "AcnError", "DataSpec", "ImageSet", "Model", "ModelConfig", "TrainConfig", "export_png",
           "load", "load_model", "train"]
