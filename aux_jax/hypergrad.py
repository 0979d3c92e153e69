"""Implicit-differentiation hypergradients for bi-level optimization.

The lower level drives a direction G(θ, φ) (a pytree shaped like the model
parameters θ) to zero -- usually G = ∇_θ L_train(θ, φ), but MAOAL's module-wise
weighted direction is not the gradient of any scalar. The upper level minimises
a validation loss L_val(θ*(φ)). By the implicit function theorem, at a point
where G(θ*, φ) = 0,

    dθ*/dφ = −J⁻¹ ∂G/∂φ,      J = ∂G/∂θ,

so with v₀ = ∇_θ L_val the hypergradient is

    dL_val/dφ = −(∂G/∂φ)ᵀ p,   where   Jᵀ p = v₀.                          (1)

`implicit_hypergradient` solves Jᵀp = v₀ with a solver and returns (1). A solver is a
function ``solver(transpose_jacobian, v0, *, symmetric, **kwargs) -> (p, HypergradInfo)``
over the linear map v ↦ Jᵀv; `SOLVERS` names the built-in ones (adding a solver is one
function and one line there, or pass the function itself as ``solver=``):

* ``"neumann"``: the truncated Neumann series (Lorraine et al., 2020; AuxiLearn,
  Navon et al., ICLR 2021)

      p = Σ_{j=0..n} (I − α Jᵀ)^j v₀ ,

  multiplied by α when ``scale_by_step=True`` (then p → (Jᵀ)⁻¹ v₀ as n → ∞ whenever
  the spectral radius of I − αJᵀ is below 1). The original AuxiLearn and MAOAL code
  does not multiply by α (``scale_by_step=False``): the step size of the upper
  optimizer absorbs it, and reproducing those papers needs that convention.
* ``"cg"``: conjugate gradient when J is symmetric (``symmetric=True``), GMRES
  otherwise.
* ``"exact"``: forms J densely and solves with LU. For tests on small problems.

Jᵀv is a vector–Jacobian product of G (reverse over reverse) in general. When G is
the gradient of a single scalar loss, J is its Hessian (symmetric) and
``symmetric=True`` uses the cheaper forward-over-reverse Hessian-vector product
(``jax.linearize`` of G).

Everything is a pure function of pytrees; iterations run in ``lax.scan`` (Neumann)
or ``lax.while_loop`` (CG, GMRES), so a call works under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import optax

PyTree = Any
LinearOperator = Callable[[PyTree], PyTree]


class HypergradInfo(NamedTuple):
  """Diagnostics of one hypergradient.

  Attributes:
    residual_norm: f32[]. For ``neumann``: the norm of the last series term added
      to p (in the same scale as p). For ``cg`` and ``exact``: ‖Jᵀp − v₀‖.
    ratio: f32[]. For ``neumann``: ‖last term‖ / ‖first term‖ (above 1 means the
      series grows). For the other solvers: ‖Jᵀp − v₀‖ / ‖v₀‖.
    diverged: bool[]. True when p or the hypergradient is not finite, or when the
      Neumann terms grew (ratio > 1), or when an iterative solve ended with a
      residual larger than ‖v₀‖. A diverged hypergradient must not be applied;
      `aux_jax.meta_optimizer` skips it and counts it.
    val_loss: f32[] L_val(θ), set by `implicit_hypergradient` (it evaluates the
      upper-level loss once, for v₀ and for this); None from a solver alone.
  """

  residual_norm: jax.Array
  ratio: jax.Array
  diverged: jax.Array
  val_loss: Optional[jax.Array] = None


def all_finite(tree: PyTree) -> jax.Array:
  """bool[]: every element of every leaf is finite (True for an empty tree)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# --------------------------------------------------------------------------------------
# Linear solvers for Jᵀ p = v₀. Each takes the operator v ↦ Jᵀv, the right-hand side,
# whether J is symmetric, and its own keyword arguments; it returns (p, info).


def neumann(
    transpose_jacobian: LinearOperator,
    v0: PyTree,
    *,
    symmetric: bool = False,
    steps: int = 3,
    step: float = 1e-3,
    scale_by_step: bool = True,
    unroll: bool = False,
) -> tuple[PyTree, HypergradInfo]:
  """Truncated Neumann series p = [α] Σ_{j=0..steps} (I − α Jᵀ)^j v₀.

  Args:
    transpose_jacobian: the linear map v ↦ Jᵀv on pytrees like ``v0``.
    v0: right-hand side, usually ∇_θ L_val.
    symmetric: unused (the series needs no symmetry).
    steps: number of terms after the first (the original code's "J", default 3).
    step: α.
    scale_by_step: multiply the sum by α (a consistent estimator of (Jᵀ)⁻¹v₀). False
      reproduces AuxiLearn's and MAOAL's convention.
    unroll: unroll the loop in the compiled program: the same arithmetic, a longer
      compilation. On a CPU the rolled loop of a ResNet-18 upper step ran ~10× slower
      (benchmarks/steps.py); XLA's cost analysis counts a rolled loop's body once.

  Returns:
    (p, info), p a pytree like ``v0``.
  """
  del symmetric
  if steps < 0:
    raise ValueError(f"neumann steps must be >= 0, got {steps}")

  def body(carry, _):
    v, p = carry
    v = optax.tree.add_scale(v, -step, transpose_jacobian(v))
    return (v, optax.tree.add(p, v)), None

  (v_last, p), _ = jax.lax.scan(body, (v0, v0), None, length=steps,
                                unroll=max(steps, 1) if unroll else 1)
  scale = step if scale_by_step else 1.0
  p = optax.tree.scale(scale, p)
  first, last = optax.tree.norm(v0), optax.tree.norm(v_last)
  ratio = last / jnp.maximum(first, jnp.finfo(first.dtype).tiny)
  diverged = ~all_finite(p) | (ratio > 1.0)
  return p, HypergradInfo(residual_norm=scale * last, ratio=ratio, diverged=diverged)


def _residual_info(transpose_jacobian, v0, p) -> HypergradInfo:
  residual = optax.tree.norm(optax.tree.sub(transpose_jacobian(p), v0))
  ratio = residual / jnp.maximum(optax.tree.norm(v0), jnp.finfo(residual.dtype).tiny)
  diverged = ~all_finite(p) | ~jnp.isfinite(residual) | (ratio > 1.0)
  return HypergradInfo(residual_norm=residual, ratio=ratio, diverged=diverged)


def conjugate_gradient(
    transpose_jacobian: LinearOperator,
    v0: PyTree,
    *,
    symmetric: bool,
    maxiter: int = 100,
    tol: float = 1e-6,
) -> tuple[PyTree, HypergradInfo]:
  """Solves Jᵀp = v₀ iteratively: CG if J is symmetric (positive definite), else GMRES.

  ``tol`` is relative to ‖v₀‖. The returned info's residual is recomputed from p.
  """
  if symmetric:
    p, _ = jax.scipy.sparse.linalg.cg(transpose_jacobian, v0, tol=tol, maxiter=maxiter)
  else:
    p, _ = jax.scipy.sparse.linalg.gmres(
        transpose_jacobian, v0, tol=tol, maxiter=maxiter, solve_method="batched")
  return p, _residual_info(transpose_jacobian, v0, p)


def exact(
    transpose_jacobian: LinearOperator, v0: PyTree, *, symmetric: bool = False
) -> tuple[PyTree, HypergradInfo]:
  """Forms Jᵀ densely (one product per parameter) and solves with LU. Small problems only.

  ``symmetric`` is unused (LU needs no symmetry).
  """
  del symmetric
  flat_v0, unravel = ravel_pytree(v0)
  flat_op = lambda x: ravel_pytree(transpose_jacobian(unravel(x)))[0]
  jt = jax.jacfwd(flat_op)(jnp.zeros_like(flat_v0))  # linear map: its Jacobian is Jᵀ
  p = unravel(jnp.linalg.solve(jt, flat_v0))
  return p, _residual_info(transpose_jacobian, v0, p)


Solver = Callable[..., tuple[PyTree, HypergradInfo]]

# name -> solver. Each is called as solver(transpose_jacobian, v0, symmetric=..., **kwargs).
SOLVERS: dict[str, Solver] = {
    "neumann": neumann,
    "cg": conjugate_gradient,
    "exact": exact,
}

# The keyword arguments `implicit_hypergradient` accepted before ``solver_kwargs``,
# and the solver argument each one is.
_LEGACY_KWARGS = {"neumann": {"neumann_steps": "steps", "step": "step",
                              "scale_by_step": "scale_by_step"},
                  "cg": {"maxiter": "maxiter", "tol": "tol"}}


def solver_options(solver: Union[str, Solver]) -> tuple[str, ...]:
  """The keyword arguments ``solver`` (a name in `SOLVERS` or a function) takes, besides
  ``transpose_jacobian``, ``v0`` and ``symmetric``."""
  fn = get_solver(solver)
  return tuple(name for name, p in inspect.signature(fn).parameters.items()
               if p.kind == p.KEYWORD_ONLY and name != "symmetric")


def get_solver(solver: Union[str, Solver]) -> Solver:
  """A solver function by name (a key of `SOLVERS`), or ``solver`` itself if callable.

  Raises:
    ValueError: an unknown name.
  """
  if callable(solver):
    return solver
  if solver not in SOLVERS:
    raise ValueError(f"unknown solver {solver!r}; expected one of {tuple(SOLVERS)}")
  return SOLVERS[solver]


def check_solver_kwargs(solver: Union[str, Solver], kwargs) -> dict:
  """``kwargs`` as a dict, checked against the arguments ``solver`` takes.

  Raises:
    ValueError: an unknown solver, or an argument it does not take.
  """
  kwargs = dict(kwargs or {})
  known = solver_options(solver)
  unknown = sorted(set(kwargs) - set(known))
  if unknown:
    name = solver if isinstance(solver, str) else getattr(solver, "__name__", "solver")
    raise ValueError(f"solver {name!r} takes {list(known)}; got unknown argument(s) "
                     f"{unknown}")
  return kwargs


# --------------------------------------------------------------------------------------


def _check_inputs(lower_grad_fn, val_loss_fn, params, aux_params):
  out = jax.eval_shape(lower_grad_fn, params, aux_params)
  if jax.tree.structure(out) != jax.tree.structure(params):
    raise ValueError(
        "lower_grad_fn(params, aux_params) must return a pytree with the structure of "
        f"params; got {jax.tree.structure(out)} for params {jax.tree.structure(params)}")
  for o, p in zip(jax.tree.leaves(out), jax.tree.leaves(params)):
    if o.shape != jnp.shape(p):
      raise ValueError(
          f"lower_grad_fn returned a leaf of shape {o.shape} for a parameter of shape "
          f"{jnp.shape(p)}")
  val = jax.eval_shape(val_loss_fn, params)
  if not isinstance(val, jax.ShapeDtypeStruct) or val.shape != ():
    raise ValueError(
        f"val_loss_fn(params) must return a scalar; got {getattr(val, 'shape', val)}")


def implicit_hypergradient(
    lower_grad_fn: Callable[[PyTree, PyTree], PyTree],
    val_loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    aux_params: PyTree,
    *,
    solver: Union[str, Solver] = "neumann",
    symmetric: bool = False,
    solver_kwargs: Optional[dict] = None,
    neumann_steps: Optional[int] = None,
    step: Optional[float] = None,
    scale_by_step: Optional[bool] = None,
    maxiter: Optional[int] = None,
    tol: Optional[float] = None,
) -> tuple[PyTree, HypergradInfo]:
  """The hypergradient dL_val/dφ = −(∂G/∂φ)ᵀ (Jᵀ)⁻¹ ∇_θ L_val, with J = ∂G/∂θ.

  Args:
    lower_grad_fn: ``(params, aux_params) -> pytree like params``: the lower-level
      direction G(θ, φ) (e.g. ∇_θ L_train(θ, φ)). Any batch it needs is closed over.
    val_loss_fn: ``params -> f32[]``: the upper-level (dev-set) loss.
    params: θ, any pytree of float arrays.
    aux_params: φ, any pytree of float arrays.
    solver: a name in `SOLVERS` (``"neumann"``, ``"cg"``, ``"exact"``; see the module
      docstring) or a solver function.
    symmetric: J is symmetric (G is the gradient of one scalar loss): use
      forward-over-reverse products (and conjugate gradient for ``"cg"``).
    solver_kwargs: the solver's own keyword arguments, e.g. ``{"steps": 3, "step":
      1e-4, "scale_by_step": False}`` for ``"neumann"`` or ``{"maxiter": 50, "tol":
      1e-5}`` for ``"cg"`` (`solver_options` lists them).
    neumann_steps, step, scale_by_step, maxiter, tol: the same as keyword arguments of
      their solver (``steps``/``step``/``scale_by_step`` of ``"neumann"``,
      ``maxiter``/``tol`` of ``"cg"``); ignored for other solvers. ``solver_kwargs``
      wins where both are given.

  Returns:
    (hypergradient, info): a pytree like ``aux_params`` and a `HypergradInfo`.

  Raises:
    ValueError: unknown solver or solver argument, G not shaped like params, or a
      non-scalar loss.
  """
  solve = get_solver(solver)
  given = {"neumann_steps": neumann_steps, "step": step, "scale_by_step": scale_by_step,
           "maxiter": maxiter, "tol": tol}
  legacy = _LEGACY_KWARGS.get(solver, {}) if isinstance(solver, str) else {}
  kwargs = {arg: given[name] for name, arg in legacy.items() if given[name] is not None}
  kwargs.update(check_solver_kwargs(solver, solver_kwargs))
  _check_inputs(lower_grad_fn, val_loss_fn, params, aux_params)

  # One evaluation of L_val gives v₀ and the reported loss, and one linearization of
  # G over (θ, φ) gives both the products v ↦ Jᵀv of the solver and the final
  # (∂G/∂φ)ᵀp: G's forward and backward passes run once, not once per derivative.
  val_loss, v0 = jax.value_and_grad(val_loss_fn)(params)
  if symmetric:
    # Forward over reverse: Jv = Jᵀv; the φ part of the same linearization, transposed.
    _, lin = jax.linearize(lower_grad_fn, params, aux_params)
    zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)
    transpose_jacobian = lambda v: lin(v, zeros(aux_params))
    phi_transpose = jax.linear_transpose(lambda a: lin(zeros(params), a), aux_params)
    dg_dphi_t = lambda p: phi_transpose(p)[0]
  else:
    _, vjp_both = jax.vjp(lower_grad_fn, params, aux_params)
    transpose_jacobian = lambda v: vjp_both(v)[0]
    dg_dphi_t = lambda p: vjp_both(p)[1]

  p, info = solve(transpose_jacobian, v0, symmetric=symmetric, **kwargs)

  hypergrad = optax.tree.scale(-1.0, dg_dphi_t(p))
  info = info._replace(diverged=info.diverged | ~all_finite(hypergrad), val_loss=val_loss)
  return hypergrad, info
