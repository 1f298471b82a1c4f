"""Shared test set-up: one torch thread (the machine's cores are shared with training jobs).

`Trainer` calls `torch.set_num_threads(config.threads)`, so the setting is restored after every test.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
