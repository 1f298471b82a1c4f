"""Small push/pop codecs over one ANS stack (constriction's AnsCoder).

Each codec is a pair of functions that are exact inverses: `pop` reads what `push` wrote. Models are given as
batched probability tables, so one call codes a whole round. Probabilities are float64 and must be computed
identically on both sides; constriction quantises them deterministically (`perfect=False`, which is also much
faster than the default).

Popping from an empty stack is still exactly invertible in constriction (it yields symbol 0 and pushing it
back restores the empty state), so a shortage of initial bits costs rate, never correctness.
"""

from __future__ import annotations

import constriction
import numpy as np

CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


def new_stack(words: np.ndarray | None = None) -> constriction.stream.stack.AnsCoder:
    if words is None:
        return constriction.stream.stack.AnsCoder()
    return constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))


def push_categorical(stack, symbols: np.ndarray, probs: np.ndarray) -> None:
    """symbols (...,) int, probs (..., K): one categorical per symbol."""
    stack.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1), CATEGORICAL,
                         np.ascontiguousarray(probs, dtype=np.float64).reshape(-1, probs.shape[-1]))


def pop_categorical(stack, probs: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(probs, dtype=np.float64).reshape(-1, probs.shape[-1])
    return stack.decode(CATEGORICAL, flat).reshape(probs.shape[:-1]).astype(np.int64)


def push_bernoulli(stack, bits: np.ndarray, p_one: np.ndarray) -> None:
    stack.encode_reverse(np.ascontiguousarray(bits, dtype=np.int32).reshape(-1), BERNOULLI,
                         np.ascontiguousarray(p_one, dtype=np.float64).reshape(-1))


def pop_bernoulli(stack, p_one: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(p_one, dtype=np.float64).reshape(-1)
    return stack.decode(BERNOULLI, flat).reshape(np.shape(p_one)).astype(np.int64)


# -- latents under a joint mixture, with bits back on the component -------------------------------------

def component_posterior(buckets: np.ndarray, log_weights: np.ndarray, log_component_probs: np.ndarray) -> np.ndarray:
    """q(k | z) for bucketed latents: buckets (B, D); log_component_probs (K, D, nbuckets) -> (B, K)."""
    d = np.arange(buckets.shape[1])
    joint = log_weights[None, :] + log_component_probs[:, d, buckets].sum(-1).T   # (B, K)
    joint -= joint.max(1, keepdims=True)
    post = np.exp(joint)
    return post / post.sum(1, keepdims=True)


def push_mixture_latent(stack, buckets, weights, component_probs, log_component_probs) -> None:
    """Code bucketed z (B, D) under Σ_k π_k Π_d P_k,d: costs -log p(z) on average, not -log π_k p(z|k).

    Pop the component with q(k|z) (bits back), push z under the component, push k under π. A single
    component carries no information (and constriction cannot code a one-symbol alphabet): z alone then.
    """
    if len(weights) == 1:
        push_categorical(stack, buckets, np.broadcast_to(component_probs[0], buckets.shape + component_probs.shape[-1:]))
        return
    ks = pop_categorical(stack, component_posterior(buckets, np.log(weights), log_component_probs))
    push_categorical(stack, buckets, component_probs[ks])
    push_categorical(stack, ks, np.broadcast_to(weights, (len(ks), len(weights))))


def pop_mixture_latent(stack, n: int, weights, component_probs, log_component_probs) -> np.ndarray:
    if len(weights) == 1:
        return pop_categorical(stack, np.broadcast_to(component_probs[0], (n,) + component_probs.shape[1:]))
    ks = pop_categorical(stack, np.broadcast_to(weights, (n, len(weights))))
    buckets = pop_categorical(stack, component_probs[ks])
    push_categorical(stack, ks, component_posterior(buckets, np.log(weights), log_component_probs))
    return buckets
