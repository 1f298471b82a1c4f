"""The conditional prior fitted to the steps the codec takes: predecessor and successor along a tour.

Training conditions p(z|ĉ) on one of the K nearest codes among all training data, but the codec conditions
each datum on its predecessor along a tour through the set being coded, whose steps are longer (a set of
10,000 is sparser than the 50,000 training codes, and a tour cannot always take the nearest code). With the
encoder and decoder fixed, the ordered cost's only free term is the tour's KL, so the prior network alone is
fitted to it: KL(q(z|x_t) || p(z|c_{t-1})) (Gauss-Hermite, `kl.kl_to_mixture`) averaged over the steps of
tours (`tour.tour_for`) through random sets of the training codes of the size the model will code.
A tenth of the codes is held out; the fitted prior is kept only if it lowers their tour's KL.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .evaluate import kl_under
from .kl import kl_to_mixture
from .progress import bar
from .tour import tour_for

BATCH = 512
HELD_OUT_FRACTION = 0.1


def tour_steps(codes: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predecessors, successors) as indices into `codes`, the steps of the codec's tour through codes[rows]."""
    tour = rows[tour_for(codes[rows])]
    return tour[:-1], tour[1:]


def tour_kl(prior: torch.nn.Module, codes: torch.Tensor, predecessors: np.ndarray, successors: np.ndarray) -> float:
    """Mean KL(q(z|x_t) || p(z|c_{t-1})) over the given steps, in nats."""
    return float(kl_under(prior, codes[successors], codes[predecessors]).sum()) / max(len(successors), 1)


def fit_prior_to_tours(prior: torch.nn.Module, codes: torch.Tensor, set_size: int, steps: int,
                       learning_rate: float = 1e-4, seed: int = 0, progress: bool = False):
    """A copy of `prior` fitted to tour steps through random sets of `set_size` of `codes` (N, D) for `steps`
    Adam steps, and the fit's record. The copy is returned only if it lowers the held-out tour's KL; otherwise
    the prior itself (the record says which)."""
    rng = np.random.default_rng(seed)
    codes = codes.detach().float()
    order = rng.permutation(len(codes))
    held = max(2, int(round(HELD_OUT_FRACTION * len(codes))))
    held_rows, fit_rows = np.sort(order[:held]), order[held:]
    if len(fit_rows) < 2:
        raise ValueError(f"{len(codes)} codes are too few to fit the prior to tours")
    held_steps = tour_steps(codes.numpy(), held_rows)
    before = tour_kl(prior, codes, *held_steps)
    fitted = copy.deepcopy(prior).float().train()
    opt = torch.optim.Adam(fitted.parameters(), lr=learning_rate)
    size = min(set_size, len(fit_rows))
    done = 0
    with bar(None, progress, total=steps, desc="prior to tours", leave=False) as shown:
        while done < steps:
            pred, succ = tour_steps(codes.numpy(), np.sort(rng.choice(fit_rows, size, replace=False)))
            shuffle = rng.permutation(len(succ))
            for a in range(0, len(shuffle), BATCH):
                pick = shuffle[a:a + BATCH]
                loss = kl_to_mixture(codes[succ[pick]], fitted(codes[pred[pick]])).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                shown.update(1)
                if done == steps:
                    break
    fitted.eval()
    after = tour_kl(fitted, codes, *held_steps)
    record = {"set_size": int(size), "steps": int(steps), "learning_rate": learning_rate, "seed": seed,
              "held_out_codes": int(held), "held_out_tour_kl_before": before, "held_out_tour_kl_after": after,
              "kept": bool(after < before)}
    return (fitted if after < before else prior), record
