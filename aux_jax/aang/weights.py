"""AANG's factored objective weights, sampling, and meta-update (Dery et al., ICLR 2023).

Factored logits. For valid objective ``c = (i, t, r, o)`` (``factors[c]``)

    z_c = W_I[i] + W_T[t] + W_R[r] + W_O[o] (+ W_all[c]),      all initialised to 0.

Each step samples a set ``S`` of K distinct valid objectives (uniformly, or by
``softmax(z / tau)`` when logits are given: Gumbel top-k, i.e. sampling without
replacement) and weights them by

    w_c = lambda_aux * softmax(z_S)_c,   c in S.

A separate 2-way softmax ``(a_prim, a_aux) = softmax(beta)`` balances the primary loss
against the auxiliary sum, so the body gradient used for training is

    g = a_prim * clip(g_prim) + a_aux * sum_{c in S} w_c clip(g_c),

each per-objective gradient on the shared body clipped to norm 10.

Meta-update (every few steps). With ``g_dev`` the gradient on the body of a dev-set loss
through a dev head, each sampled objective's logit receives

    d z_c = -cos(g_dev, g_c),      c in S       (0 for objectives not sampled),

and the factors receive it by the chain rule through ``z_c = sum of factors``:

    d W_I[i] = sum_{c in S, i_c = i} d z_c,   ... (same for T, R, O),   d W_all[c] = d z_c,

followed by plain SGD, ``W <- W - lr * dW``. The balance logits get
``d beta = (-cos(g_dev, g_prim), -cos(g_dev, g_aux))`` with ``g_aux`` the combined
auxiliary body gradient. Cosines are scale-invariant, so clipping does not change them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any
EPS = 1e-8


class FactoredLogits(NamedTuple):
  """Logits per axis value, plus one per objective.

  Attributes:
    w_input: f32[|I|].  w_transform: f32[|T|].  w_representation: f32[|R|].
    w_output: f32[|O|].  w_all: f32[C], one per valid objective.
  """

  w_input: jax.Array
  w_transform: jax.Array
  w_representation: jax.Array
  w_output: jax.Array
  w_all: jax.Array


def init_logits(shape: tuple[int, int, int, int], num_objectives: int) -> FactoredLogits:
  """All-zero logits for a space of axis sizes ``shape`` with C valid objectives."""
  if num_objectives < 1:
    raise ValueError(f"num_objectives must be >= 1, got {num_objectives}.")
  return FactoredLogits(*(jnp.zeros((n,), jnp.float32) for n in shape),
                        jnp.zeros((num_objectives,), jnp.float32))


def objective_logits(logits: FactoredLogits, factors: jax.Array,
                     use_all: bool = True) -> jax.Array:
  """``z`` f32[C] from factored logits and ``factors`` i32[C, 4]."""
  z = (logits.w_input[factors[:, 0]] + logits.w_transform[factors[:, 1]]
       + logits.w_representation[factors[:, 2]] + logits.w_output[factors[:, 3]])
  return z + logits.w_all if use_all else z


def sample_objectives(key: jax.Array, num_objectives: int, k: int,
                      logits: jax.Array | None = None,
                      temperature: float = 1.0) -> jax.Array:
  """K distinct objective indices by Gumbel top-k.

  ``argtop_k(z / tau + Gumbel)`` samples without replacement with probabilities
  ``softmax(z / tau)`` at each draw (Kool et al., 2019); ``logits=None`` is uniform.

  Args:
    key: PRNG key.
    num_objectives: C.
    k: how many to sample, ``1 <= k <= C`` (static).
    logits: optional f32[C].
    temperature: tau.

  Returns:
    i32[K] indices.
  """
  if not 1 <= k <= num_objectives:
    raise ValueError(f"k must be in [1, {num_objectives}], got {k}.")
  scores = jax.random.gumbel(key, (num_objectives,))
  if logits is not None:
    scores = scores + logits / temperature
  return jax.lax.top_k(scores, k)[1].astype(jnp.int32)


def aux_weights(logits: FactoredLogits, factors: jax.Array, sampled: jax.Array,
                lambda_aux: float, use_all: bool = True) -> jax.Array:
  """``w`` f32[K]: ``lambda_aux * softmax(z[sampled])``."""
  z = objective_logits(logits, factors, use_all)[sampled]
  return lambda_aux * jax.nn.softmax(z)


def balance_weights(beta: jax.Array) -> jax.Array:
  """``(a_prim, a_aux)`` f32[2] = ``softmax(beta)``."""
  return jax.nn.softmax(beta)


def tree_cosine(a: PyTree, b: PyTree) -> jax.Array:
  """``<a, b> / ((|a| + eps)(|b| + eps))`` over all leaves."""
  dot = optax.tree_utils.tree_vdot(a, b)
  return dot / ((optax.tree_utils.tree_norm(a) + EPS)
                * (optax.tree_utils.tree_norm(b) + EPS))


def clip_factor(norm: jax.Array, max_norm: float) -> jax.Array:
  """``min(1, max_norm / norm)``: the scale that clips a vector of ``norm`` to ``max_norm``."""
  return jnp.minimum(1.0, max_norm / (norm + EPS))


def logit_gradients(logits: FactoredLogits, factors: jax.Array, sampled: jax.Array,
                    cosines: jax.Array, use_all: bool = True) -> FactoredLogits:
  """``dW`` for ``d z_c = -cos_c`` on the sampled objectives (module docstring).

  Computed as ``grad_W sum_k (-cos_k) z_{s_k}(W)``, i.e. the chain rule through the
  factorisation.

  Args:
    logits: current `FactoredLogits`.
    factors: i32[C, 4].
    sampled: i32[K] sampled objectives.
    cosines: f32[K], ``cos(g_dev, g_c)`` per sampled objective.
    use_all: whether ``W_all`` is part of the logits (else its gradient is 0).

  Returns:
    `FactoredLogits` of gradients.
  """
  cosines = jax.lax.stop_gradient(cosines)

  def surrogate(w):
    return jnp.sum(-cosines * objective_logits(w, factors, use_all)[sampled])

  return jax.grad(surrogate)(logits)


def meta_update(logits: FactoredLogits, factors: jax.Array, sampled: jax.Array,
                cosines: jax.Array, lr: float, use_all: bool = True) -> FactoredLogits:
  """One SGD step ``W - lr * logit_gradients(...)``."""
  grads = logit_gradients(logits, factors, sampled, cosines, use_all)
  return jax.tree.map(lambda w, g: w - lr * g, logits, grads)


def axis_weights(logits: FactoredLogits, factors: jax.Array,
                 use_all: bool = True) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
  """Per-axis views of the learned objective weights.

  With ``p = softmax(z)`` over the C valid objectives (the weights of the full space),

      marginal_a[v] = sum_{c : factors[c, a] = v} p_c,      a in (I, T, R, O),

  the share of the objective distribution on value v of axis a; and
  ``factor_a = softmax(W_a)``, the factor logits of axis a alone (ignores ``W_all`` and
  which combinations are valid). Both sum to 1 along each axis. With all logits 0 the
  marginals are the valid-objective counts over C (e.g. 16/24 denoise in
  ``citation.supervised``), the factor softmaxes uniform.

  Args:
    logits: `FactoredLogits`.
    factors: i32[C, 4] factor indices of the valid objectives.
    use_all: whether ``W_all`` enters ``z``.

  Returns:
    ``(marginals, factor_softmaxes)``, each a 4-tuple of f32[|axis|] in (I, T, R, O) order.
  """
  p = jax.nn.softmax(objective_logits(logits, factors, use_all))
  per_axis = tuple(logits)[:4]
  marginals = tuple(jax.nn.one_hot(factors[:, a], w.shape[0], dtype=p.dtype).T @ p
                    for a, w in enumerate(per_axis))
  return marginals, tuple(jax.nn.softmax(w) for w in per_axis)
