"""IMTL-G: impartial multi-task learning, its gradient balance (Liu et al., ICLR 2021,
"Towards Impartial Multi-task Learning").

IMTL-G looks for the update d = Σ_t α_t g_t with Σ_t α_t = 1 whose projections on
every task's unit gradient u_t = g_t/‖g_t‖ are equal, ⟨d, u_1⟩ = ⟨d, u_t⟩ for all t.
With D = [g_1 − g_t]_{t=2..T} and U = [u_1 − u_t]_{t=2..T} (rows), the closed form is

    α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹,      α_1 = 1 − Σ_{t≥2} α_t                  (paper eq. 6)

Everything is in the T×T Gram matrix: ⟨g_s, u_t⟩ = GG[s, t]/‖g_t‖. The inverse is a
pseudo-inverse here (D Uᵀ is singular when the gradients are linearly dependent; the
paper and LibMTL invert it). The choice of the reference task (task 0 here) does not
change α. IMTL's loss-scale half (IMTL-L, learned scales e^{s_t} ℓ_t − s_t, which LibMTL's
``IMTL`` applies before IMTL-G) is not part of this rule.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aux_jax.rules import tree

PyTree = Any


class IMTLInfo(NamedTuple):
  """Diagnostics of one IMTL-G combination.

  Attributes:
    coefficients: f32[T]. α with combined = Σ_t α_t g_t, Σ_t α_t = 1.
    projection: f32[]. ⟨d, u_t⟩, the common projection (task 0's).
  """

  coefficients: jax.Array
  projection: jax.Array


def imtl_weights(gram: jax.Array) -> jax.Array:
  """α of the module docstring from the Gram matrix.

  Args:
    gram: f[T, T], GG[s, t] = ⟨g_s, g_t⟩ (T ≥ 1; a zero gradient counts as norm 1).

  Returns:
    f[T], Σ α = 1.
  """
  t = gram.shape[0]
  if t == 1:
    return jnp.ones((1,), gram.dtype)
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
  gu = gram / jnp.where(norms > 0, norms, 1.0)[None, :]     # gu[s, t] = ⟨g_s, u_t⟩
  # P: (T−1)×T, row j = e_0 − e_{j+1}; D = P·g, U = P·u.
  p = jnp.concatenate([jnp.ones((t - 1, 1), gram.dtype), -jnp.eye(t - 1, dtype=gram.dtype)],
                      axis=1)
  du = p @ gu @ p.T                                           # D Uᵀ
  b = (gu @ p.T)[0]                                           # g_0 Uᵀ
  rest = b @ jnp.linalg.pinv(du)
  return jnp.concatenate([1.0 - jnp.sum(rest, keepdims=True), rest])


def imtl(grads: PyTree) -> tuple[PyTree, IMTLInfo]:
  """Combines per-task gradients with IMTL-G.

  Args:
    grads: pytree of per-task gradients, every leaf ``[T, ...]``.

  Returns:
    ``(combined, info)``: d = Σ_t α_t g_t and an `IMTLInfo`.
  """
  gram = tree.task_gram(grads)
  alpha = imtl_weights(gram)
  n0 = jnp.sqrt(jnp.maximum(gram[0, 0], 0.0))
  projection = (alpha @ gram[:, 0]) / jnp.where(n0 > 0, n0, 1.0)
  return tree.task_combine(grads, alpha), IMTLInfo(coefficients=alpha, projection=projection)
