"""Fitting the unconditional prior p(z) (paper section 3.1) to the training codes with EM."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

from .config import COVARIANCES
from .prior import UnconditionalPrior

CANDIDATE_COMPONENTS = (1, 2, 4, 8, 16, 32, 64)


MAX_FIT_SAMPLES = 100_000


def latent_samples(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws z ~ q(z|x) = N(c, I), a few per code.

    p(z) is a prior for the latent, not for the codes: fitting it to the codes themselves gives components
    far narrower than q's unit variance and an enormous KL. Maximum likelihood on samples of the aggregate
    posterior maximises E_q[log p(z)], which is what minimises the KL.
    """
    per_code = int(np.clip(MAX_FIT_SAMPLES // max(len(codes), 1), 1, 8))
    z = np.repeat(codes, per_code, axis=0)
    return z + rng.standard_normal(z.shape)


def split_samples(codes: np.ndarray, seed: int = 0, validation_fraction: float = 0.1):
    """Latent samples of a fitting part and a validation part of the codes, split before sampling so that a
    datum never helps choose the size of the mixture it was fitted with. Returns (fit, validation, the number
    of validation codes, the generator, to go on drawing from)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(codes))
    n_val = max(1, int(round(validation_fraction * len(codes))))
    val = latent_samples(codes[order[:n_val]], rng)
    return latent_samples(codes[order[n_val:]], rng), val, n_val, rng


def fit_unconditional(codes: np.ndarray, seed: int = 0, validation_fraction: float = 0.1,
                      candidates=CANDIDATE_COMPONENTS, covariance: str = "diag") -> tuple[UnconditionalPrior, dict]:
    """Choose the number of components by held-out log-likelihood (`split_samples`), then refit on all
    samples. Returns the prior and a record of the selection. `covariance`: "diag" or "full"."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
    codes = np.asarray(codes, dtype=np.float64)
    fit, val, n_val, rng = split_samples(codes, seed, validation_fraction)
    scores = {}
    for k in candidates:
        if k > len(fit):
            break
        gm = GaussianMixture(k, covariance_type=covariance, random_state=seed, reg_covar=1e-4).fit(fit)
        scores[k] = float(gm.score(val))
    best = max(scores, key=scores.get)
    gm = GaussianMixture(best, covariance_type=covariance, random_state=seed, reg_covar=1e-4).fit(
        latent_samples(codes, rng))
    if covariance == "full":
        cov = gm.covariances_.copy()
        prior = UnconditionalPrior(gm.weights_.copy(), gm.means_.copy(), np.diagonal(cov, axis1=1, axis2=2).copy(),
                                   cov)
    else:
        prior = UnconditionalPrior(gm.weights_.copy(), gm.means_.copy(), gm.covariances_.copy())
    return prior, {"components": best, "covariance": covariance, "validation_loglik": scores,
                   "validation_size": n_val}
