"""acncodec: lossless compression of image datasets with Associative Compression Networks.

The public names below load their module on first use: `import acncodec` and `acncodec --version` do not
wait for torch, faiss and scikit-learn, which only the commands that model or code need.
"""

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version as _distribution_version

try:
    __version__ = _distribution_version("acncodec")
except PackageNotFoundError:   # run from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {"ACN": "acn", "AcnError": "errors", "DataSpec": "data", "ImageSet": "data", "Model": "modelfile",
            "ModelConfig": "config", "TrainConfig": "config", "compress": "api", "decompress": "api",
            "estimate": "api", "export_png": "data", "load": "data", "load_model": "registry",
            "shipped": "registry", "train": "train"}
__all__ = sorted(_EXPORTS) + ["__version__"]


class _Package(types.ModuleType):
    def __getattr__(self, name):
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name, value):
        # Loading the submodule acncodec.train binds it as the package's attribute `train`; the public
        # `acncodec.train` is the function, so that binding is skipped (the module stays in sys.modules).
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package
