"""AANG's factored objective weights, batch split and meta-update (Dery et al., ICLR 2023).

Read from the original (ldery/Automating-Auxiliary-Learning @ f876fe2; files under
``AutoSearchSpace/``).

Factored logits. For valid objective ``c = (i, t, r, o)`` (``factors[c]``) the logits are
``W_I[i], W_T[t], W_R[r], W_O[o]`` and ``W_all[c]``, all initialised to 0
(``searchspace.py:44-67``). Their full-space sum ``z_c`` is used for logging only
(`axis_weights`).

Batch split and loss weight (``data.py:365-415``, ``modelling.py:698-702``). Each step
samples K distinct valid objectives S uniformly (``searchspace.py:166-170``). An
auxiliary batch of B rows is shared out:

    n_R      = ceil(B · softmax_{R in S}(W_R)[r])           per sampled R value
    n_{R,I}  = ceil(n_R · softmax_{I in S|R}(W_I)[i])       per sampled I given R
    n_c      = ceil(n_{R,I} · softmax_{T in S|R,I}(W_T)[t]) (n_{R,I} if the softmax is 1)

(softmaxes over the values present among the sampled objectives), and objective c's
loss (a mean over its n_c rows) is weighted by

    s_c = (n_c / B) · a_aux · q_c,     q = softmax_{c in S}(W_all[c] + W_O[o_c]),

with ``(a_prim, a_aux) = softmax(beta)`` (``modelling.py:649-650``). So W_I, W_T and W_R
act through the batch split, W_O and W_all through q. The primary loss gets a_prim.

Meta-update (``modelling.py:740-770``, ``searchspace.py:209-264``). Every step, with
``g_dev`` the body gradient of a dev loss, each sampled objective sends the upstream
``d z_c = -cos(g_dev, g_c)`` (body gradients, before clipping) to every logit it is made
of, without a softmax Jacobian:

    d W_a[x] += sum_{c in S, factor_a(c) = x} -cos_c,     d W_all[c] += -cos_c,

and the balance gets ``d beta += (-cos(g_dev, g_prim), -cos(g_dev, g_aux))`` with
``g_aux = sum_c n_active,c · clip_10(g_c)``. Every ``meta_every`` (3) steps the mean is
applied by plain SGD, ``W <- W - aux_lr · dW / 3`` and ``beta <- beta - balance_lr ·
dbeta / 3``, and the sums are reset.
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


def _present_softmax(w: jax.Array, present: jax.Array) -> jax.Array:
  """softmax of ``w`` over the last axis restricted to ``present`` (0 elsewhere)."""
  p = jax.nn.softmax(jnp.where(present, w, -1e30), axis=-1)
  return jnp.where(present, p, 0.0)


def _ceil(x: jax.Array) -> jax.Array:
  # ceil, robust to float error: 64 · 0.5 computed as 32.00001 must stay 32.
  return jnp.ceil(x - 1e-3)


def batch_split(logits: FactoredLogits, factors: jax.Array, sampled: jax.Array,
                batch_size: int) -> tuple[jax.Array, jax.Array]:
  """The rows of each sampled objective (module docstring).

  Args:
    logits: `FactoredLogits`.
    factors: i32[C, 4] (I, T, R, O) indices of the valid objectives.
    sampled: i32[K] distinct sampled objectives.
    batch_size: B, rows of the auxiliary batch.

  Returns:
    ``(n_c, n_ri)``: f32[K] rows of each objective, and f32[K] rows of its (R, I)
    group (its T-group is a subset of them).
  """
  f = factors[sampled]
  i, t, r = f[:, 0], f[:, 1], f[:, 2]
  n_i, n_t, n_r = (w.shape[0] for w in (logits.w_input, logits.w_transform,
                                        logits.w_representation))
  present_r = jnp.zeros((n_r,), bool).at[r].set(True)
  size_r = _ceil(batch_size * _present_softmax(logits.w_representation, present_r))
  present_ri = jnp.zeros((n_r, n_i), bool).at[r, i].set(True)
  size_ri = _ceil(size_r[:, None] * _present_softmax(logits.w_input[None], present_ri))
  present_rit = jnp.zeros((n_r, n_i, n_t), bool).at[r, i, t].set(True)
  p_t = _present_softmax(logits.w_transform[None, None], present_rit)
  size_rit = jnp.where(p_t < 1.0, _ceil(size_ri[..., None] * p_t), size_ri[..., None])
  return size_rit[r, i, t], size_ri[r, i]


def loss_scales(logits: FactoredLogits, factors: jax.Array, sampled: jax.Array,
                sizes: jax.Array, batch_size: int, a_aux: jax.Array,
                use_all: bool = True) -> jax.Array:
  """``s`` f32[K]: ``(n_c / B) · a_aux · softmax_S(W_all + W_O)``."""
  z = logits.w_output[factors[sampled, 3]]
  if use_all:
    z = z + logits.w_all[sampled]
  return sizes / batch_size * a_aux * jax.nn.softmax(z)


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
