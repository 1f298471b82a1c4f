"""acncodec: lossless compression of image datasets with Associative Compression Networks.

The public names load their module on first use, so reading an archive (acncodec.archive) does not wait for
torch, which only modelling and coding need.
"""

import importlib
import sys
import types

_EXPORTS = {"ACN": "acn", "AcnError": "errors", "DataSpec": "data", "ImageSet": "data", "Model": "modelfile",
            "ModelConfig": "config", "TrainConfig": "config", "compress": "api", "decompress": "api",
            "estimate": "api", "export_png": "data", "load": "data", "load_model": "registry",
            "shipped": "registry", "train": "train"}
__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    def __getattr__(self, name):
        if name not in _EXPORTS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name, value):
        # importing the submodule acncodec.train binds it here as `train`; the public name is the function
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package
