"""What the tour benchmarks share: a model's float codes of a dataset, and the KL along a tour through them."""

from __future__ import annotations

import numpy as np
import torch

from acncodec.data import load
from acncodec.evaluate import encode_all, kl_along
from acncodec.registry import load_model


def model_codes(model_name: str, data_name: str):
    """(model, data, codes): the model, the images and their float codes E(x) (the estimate's)."""
    model = load_model(model_name)
    data = load(data_name)
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2))).long()
    return model, data, encode_all(model.net, images)


def setup(args):
    """What a tour benchmark starts from, after its --threads, --model and --data: (model, data, codes, the codes
    as a numpy array, the KL along a tour through them)."""
    torch.set_num_threads(args.threads)
    model, data, codes = model_codes(args.model, args.data)
    return model, data, codes, codes.numpy(), lambda tour: tour_kl(model, codes, tour)


def tour_kl(model, codes: torch.Tensor, tour) -> float:
    """KL(q(z|x_t) || p(z|c_{t-1})) summed along `tour` per image of `codes`, the chain head left out."""
    tour = torch.as_tensor(np.asarray(tour))
    return float(kl_along(model.net, codes[tour[1:]], codes[tour[:-1]]).sum()) / len(codes)
