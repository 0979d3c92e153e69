"""Implicit-differentiation hypergradients for bi-level optimization.

The lower level drives a direction G(θ, φ) (a pytree shaped like the model
parameters θ) to zero -- usually G = ∇_θ L_train(θ, φ), but MAOAL's module-wise
weighted direction is not the gradient of any scalar. The upper level minimises
a validation loss L_val(θ*(φ)). By the implicit function theorem, at a point
where G(θ*, φ) = 0,

    dθ*/dφ = −J⁻¹ ∂G/∂φ,      J = ∂G/∂θ,

so with v₀ = ∇_θ L_val the hypergradient is

    dL_val/dφ = −(∂G/∂φ)ᵀ p,   where   Jᵀ p = v₀.                          (1)

When the upper loss also depends on φ directly, L_val(θ, φ), its ∂L_val/∂φ is added to
(1) (``val_loss_takes_phi=True``).

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

Every solver also takes ``ridge`` = λ ≥ 0: it then solves the damped system
(Jᵀ + λI) p = v₀ instead (ridge damping, for an ill-conditioned or indefinite J),
applied in one place (`solve_transposed`) by adding λv to every product. A callable in
the shape of jaxopt's ``linear_solve`` functions, ``solve(matvec, b, **kw) -> x``
(lineax users write one such line), is a solver too: `get_solver` adapts it
(`from_linear_solve`); it is told apart from the registry's shape by having no
``symmetric`` parameter.

Neumann's ``step="auto"`` picks α = 1/ρ̂ from a power-iteration estimate ρ̂ of the
largest |eigenvalue| of J (`estimate_spectral_radius`, matrix–vector products only),
so the series converges whenever J's eigenvalues have positive real parts and the
estimate is within a factor 2 of the truth; ρ̂ is reported as
``HypergradInfo.spectral_radius``. The originals' fixed α stays the default.

`custom_root` is the decorator form (jaxopt's ``implicit_diff.custom_root``): it makes
``jax.grad`` of anything computed from a root solver's output use (1) with the
cotangent in place of ∇_θ L_val, never differentiating through the solver.

Jᵀv is a vector–Jacobian product of G (reverse over reverse) in general. When G is
the gradient of a single scalar loss, J is its Hessian (symmetric) and
``symmetric=True`` uses the cheaper forward-over-reverse Hessian-vector product
(``jax.linearize`` of G).

Everything is a pure function of pytrees; iterations run in ``lax.scan`` (Neumann)
or ``lax.while_loop`` (CG, GMRES), so a call works under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
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
    spectral_radius: f32[] the power-iteration estimate ρ̂ of the largest |eigenvalue|
      of J (of J + λI with ``ridge``) when Neumann's ``step="auto"`` chose α = 1/ρ̂;
      None otherwise.
  """

  residual_norm: jax.Array
  ratio: jax.Array
  diverged: jax.Array
  val_loss: Optional[jax.Array] = None
  spectral_radius: Optional[jax.Array] = None


def all_finite(tree: PyTree) -> jax.Array:
  """bool[]: every element of every leaf is finite (True for an empty tree)."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# --------------------------------------------------------------------------------------
# Linear solvers for Jᵀ p = v₀. Each takes the operator v ↦ Jᵀv, the right-hand side,
# whether J is symmetric, and its own keyword arguments; it returns (p, info).


def estimate_spectral_radius(operator: LinearOperator, like: PyTree,
                             iterations: int = 10) -> jax.Array:
  """ρ̂ ≈ max |λ| of a linear map, by power iteration from a fixed random start.

  Each of ``iterations`` products gives ‖A v_k‖ for a unit v_k, and v_{k+1} =
  A v_k / ‖A v_k‖; ρ̂ is the largest of these norms. For a symmetric A the norms
  increase to max |λ| (from below: a few iterations may underestimate it, which α = 1/ρ̂
  tolerates up to a factor 2); for a non-normal A each norm is at most ‖A‖₂ ≥ max |λ|.
  The start is drawn from a fixed key, so the estimate is a pure function of A.

  Args:
    operator: v ↦ A v on pytrees like ``like`` (here v ↦ Jᵀv; Jᵀ and J have the same
      eigenvalues).
    like: a pytree giving the structure, shapes and dtypes of v.
    iterations: number of products, ≥ 1.

  Returns:
    f32[] (the dtype of ``like``'s leaves) ρ̂ ≥ 0.
  """
  if iterations < 1:
    raise ValueError(f"power iterations must be >= 1, got {iterations}")
  flat, unravel = ravel_pytree(like)
  start = jax.random.normal(jax.random.PRNGKey(0), flat.shape, flat.dtype)
  tiny = jnp.finfo(flat.dtype).tiny
  start = unravel(start / jnp.maximum(jnp.linalg.norm(start), tiny))

  def body(v, _):
    w = operator(v)
    norm = optax.tree.norm(w)
    return optax.tree.scale(1.0 / jnp.maximum(norm, tiny), w), norm

  _, norms = jax.lax.scan(body, start, None, length=iterations)
  return jnp.max(norms)


def neumann(
    transpose_jacobian: LinearOperator,
    v0: PyTree,
    *,
    symmetric: bool = False,
    steps: int = 3,
    step: Union[float, str] = 1e-3,
    scale_by_step: bool = True,
    unroll: bool = False,
    power_iterations: int = 10,
) -> tuple[PyTree, HypergradInfo]:
  """Truncated Neumann series p = [α] Σ_{j=0..steps} (I − α Jᵀ)^j v₀.

  The terms shrink, and p → (Jᵀ)⁻¹ v₀ when scaled by α, iff every eigenvalue λ of J
  has |1 − αλ| < 1: for real positive λ ≤ λ_max that is α < 2/λ_max. The originals'
  α = 1 (MAOAL) diverges as soon as λ_max > 2; ``step="auto"`` sets α = 1/ρ̂ with ρ̂ the
  power-iteration estimate of max |λ| (`estimate_spectral_radius`), so every real
  positive λ ≤ ρ̂ gives 1 − αλ ∈ [0, 1). No α > 0 makes the series converge when J has
  an eigenvalue with negative real part (an indefinite Hessian): then add ``ridge``
  above |λ_min| (`solve_transposed`) or use ``"cg"`` (GMRES).

  Args:
    transpose_jacobian: the linear map v ↦ Jᵀv on pytrees like ``v0``.
    v0: right-hand side, usually ∇_θ L_val.
    symmetric: unused (the series needs no symmetry).
    steps: number of terms after the first (the original code's "J", default 3).
    step: α, or ``"auto"``: α = 1/ρ̂ (reported as ``info.spectral_radius``).
    scale_by_step: multiply the sum by α (a consistent estimator of (Jᵀ)⁻¹v₀). False
      reproduces AuxiLearn's and MAOAL's convention.
    unroll: unroll the loop in the compiled program: the same arithmetic, a longer
      compilation. On a CPU the rolled loop of a ResNet-18 upper step ran ~10× slower
      (benchmarks/steps.py); XLA's cost analysis counts a rolled loop's body once.
    power_iterations: products of the spectral-radius estimate (``step="auto"`` only).

  Returns:
    (p, info), p a pytree like ``v0``.
  """
  del symmetric
  if steps < 0:
    raise ValueError(f"neumann steps must be >= 0, got {steps}")
  radius = None
  if isinstance(step, str):
    if step != "auto":
      raise ValueError(f"neumann step must be a number or 'auto', got {step!r}")
    radius = estimate_spectral_radius(transpose_jacobian, v0, power_iterations)
    step = 1.0 / jnp.maximum(radius, jnp.finfo(radius.dtype).tiny)

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
  return p, HypergradInfo(residual_norm=scale * last, ratio=ratio, diverged=diverged,
                          spectral_radius=radius)


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


# Options every solver takes, applied by `solve_transposed` around the solver.
COMMON_OPTIONS = ("ridge",)


def _is_linear_solve(fn: Callable) -> bool:
  """A callable without a ``symmetric`` parameter has the ``solve(matvec, b, **kw)``
  shape (jaxopt's ``linear_solve``); the registry's solvers all take ``symmetric``."""
  try:
    return "symmetric" not in inspect.signature(fn).parameters
  except (TypeError, ValueError):  # no signature: take the registry's shape
    return False


def from_linear_solve(solve: Callable[..., PyTree]) -> Solver:
  """A `SOLVERS`-shaped solver from ``solve(matvec, b, **kw) -> x`` solving A x = b.

  This is the shape of jaxopt's ``linear_solve.solve_cg`` / ``solve_gmres`` /
  ``solve_normal_cg`` and of a one-line lineax wrapper, e.g. ``lambda matvec, b:
  lx.linear_solve(lx.FunctionLinearOperator(matvec, jax.eval_shape(lambda: b)), b,
  lx.GMRES(rtol=1e-6, atol=1e-6)).value``. It is
  called with matvec = v ↦ Jᵀv (+ λv with ``ridge``) and b = v₀; ``symmetric`` is not
  passed on (choose CG or GMRES in ``solve`` itself). Info: the residual of the
  returned x, as for ``"cg"``.

  ``get_solver`` applies this to any callable without a ``symmetric`` parameter, so
  ``solver=jaxopt.linear_solve.solve_cg`` works as it is.
  """

  @functools.wraps(solve)
  def solver(transpose_jacobian, v0, *, symmetric: bool = False, **kwargs):
    del symmetric
    p = solve(transpose_jacobian, v0, **kwargs)
    return p, _residual_info(transpose_jacobian, v0, p)

  solver.linear_solve = solve
  return solver


def _own_options(solver: Union[str, Solver]) -> tuple[tuple[str, ...], bool]:
  """(the named options of ``solver``, whether it also takes any ``**kwargs``)."""
  fn = get_solver(solver)
  solve = getattr(fn, "linear_solve", None)
  if solve is not None:  # solve(matvec, b, **kw): everything after (matvec, b)
    params = list(inspect.signature(solve).parameters.values())[2:]
  else:
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD)]
  names = tuple(p.name for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name != "symmetric" and p.name not in COMMON_OPTIONS)
  return names, any(p.kind == p.VAR_KEYWORD for p in params)


def solver_options(solver: Union[str, Solver]) -> tuple[str, ...]:
  """The keyword arguments ``solver`` (a name in `SOLVERS` or a function) takes, besides
  ``transpose_jacobian``, ``v0`` and ``symmetric``: its own, then `COMMON_OPTIONS`."""
  return _own_options(solver)[0] + COMMON_OPTIONS


def get_solver(solver: Union[str, Solver]) -> Solver:
  """A solver function by name (a key of `SOLVERS`), or ``solver`` itself if callable
  (adapted by `from_linear_solve` if it has the ``solve(matvec, b, **kw)`` shape).

  Raises:
    ValueError: an unknown name.
  """
  if callable(solver):
    if getattr(solver, "linear_solve", None) is None and _is_linear_solve(solver):
      return from_linear_solve(solver)
    return solver
  if solver not in SOLVERS:
    raise ValueError(f"unknown solver {solver!r}; expected one of {tuple(SOLVERS)}")
  return SOLVERS[solver]


def check_solver_kwargs(solver: Union[str, Solver], kwargs) -> dict:
  """``kwargs`` as a dict, checked against the arguments ``solver`` takes (its own and
  `COMMON_OPTIONS`; anything if it takes ``**kwargs``).

  Raises:
    ValueError: an unknown solver, or an argument it does not take.
  """
  kwargs = dict(kwargs or {})
  own, any_kwargs = _own_options(solver)
  unknown = sorted(set(kwargs) - set(own) - set(COMMON_OPTIONS))
  if unknown and not any_kwargs:
    name = solver if isinstance(solver, str) else getattr(solver, "__name__", "solver")
    raise ValueError(f"solver {name!r} takes {list(own + COMMON_OPTIONS)}; got unknown "
                     f"argument(s) {unknown}")
  ridge = kwargs.get("ridge", 0.0)
  if isinstance(ridge, (int, float)) and ridge < 0:
    raise ValueError(f"ridge must be >= 0, got {ridge}")
  return kwargs


def solve_transposed(
    transpose_jacobian: LinearOperator,
    v0: PyTree,
    *,
    solver: Union[str, Solver] = "neumann",
    symmetric: bool = False,
    solver_kwargs: Optional[dict] = None,
) -> tuple[PyTree, HypergradInfo]:
  """Solves (Jᵀ + λI) p = v₀ with ``solver``: the one place solvers are called.

  Args:
    transpose_jacobian: v ↦ Jᵀv on pytrees like ``v0``.
    v0: the right-hand side.
    solver: a name in `SOLVERS`, a registry-shaped solver function, or a
      ``solve(matvec, b, **kw)`` callable (`from_linear_solve`).
    symmetric: J is symmetric (passed to the solver).
    solver_kwargs: the solver's own options and ``ridge`` = λ ≥ 0 (default 0: the
      operator is passed on untouched). Ridge damping turns an ill-conditioned or
      indefinite J into a better one at the price of a bias: p solves the damped
      system, not Jᵀp = v₀ (``info`` reports the damped residual).

  Returns:
    (p, info).
  """
  kwargs = check_solver_kwargs(solver, solver_kwargs)
  ridge = kwargs.pop("ridge", 0.0)
  operator = transpose_jacobian
  if ridge is not None and not (isinstance(ridge, (int, float)) and ridge == 0):
    operator = lambda v: optax.tree.add_scale(transpose_jacobian(v), ridge, v)
  return get_solver(solver)(operator, v0, symmetric=symmetric, **kwargs)


# --------------------------------------------------------------------------------------


def _check_inputs(lower_grad_fn, val_loss_fn, params, aux_params, takes_phi=False,
                  has_aux=False):
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
  val = jax.eval_shape(val_loss_fn, *((params, aux_params) if takes_phi else (params,)))
  if has_aux:
    if not isinstance(val, tuple) or len(val) != 2:
      raise ValueError("with has_aux=True, val_loss_fn must return (loss, aux)")
    val = val[0]
  if not isinstance(val, jax.ShapeDtypeStruct) or val.shape != ():
    call = "val_loss_fn(params, aux_params)" if takes_phi else "val_loss_fn(params)"
    raise ValueError(f"{call} must return a scalar; got {getattr(val, 'shape', val)}")


def _linearize(g, params, aux_params, symmetric):
  """(v ↦ Jᵀv, p ↦ (∂G/∂φ)ᵀp) from one linearization of G over (θ, φ)."""
  if symmetric:
    # Forward over reverse: Jv = Jᵀv; the φ part of the same linearization, transposed.
    _, lin = jax.linearize(g, params, aux_params)
    zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)
    transpose_jacobian = lambda v: lin(v, zeros(aux_params))
    phi_transpose = jax.linear_transpose(lambda a: lin(zeros(params), a), aux_params)
    dg_dphi_t = lambda p: phi_transpose(p)[0]
  else:
    _, vjp_both = jax.vjp(g, params, aux_params)
    transpose_jacobian = lambda v: vjp_both(v)[0]
    dg_dphi_t = lambda p: vjp_both(p)[1]
  return transpose_jacobian, dg_dphi_t


def implicit_hypergradient(
    lower_grad_fn: Callable[[PyTree, PyTree], PyTree],
    val_loss_fn: Callable[..., Any],
    params: PyTree,
    aux_params: PyTree,
    *,
    solver: Union[str, Solver] = "neumann",
    symmetric: bool = False,
    solver_kwargs: Optional[dict] = None,
    val_loss_takes_phi: bool = False,
    has_aux: bool = False,
    neumann_steps: Optional[int] = None,
    step: Optional[float] = None,
    scale_by_step: Optional[bool] = None,
    maxiter: Optional[int] = None,
    tol: Optional[float] = None,
):
  """The hypergradient dL_val/dφ = ∂L_val/∂φ − (∂G/∂φ)ᵀ (Jᵀ)⁻¹ ∇_θ L_val, J = ∂G/∂θ.

  The direct term ∂L_val/∂φ is present only when the upper loss depends on φ itself
  (``val_loss_takes_phi=True``, e.g. a regulariser on the hyperparameters); otherwise
  it is zero, as in AuxiLearn and MAOAL.

  Args:
    lower_grad_fn: ``(params, aux_params) -> pytree like params``: the lower-level
      direction G(θ, φ) (e.g. ∇_θ L_train(θ, φ)). Any batch it needs is closed over.
    val_loss_fn: ``params -> f32[]``: the upper-level (dev-set) loss; ``(params,
      aux_params) -> f32[]`` with ``val_loss_takes_phi``; returning ``(loss, aux)``
      with ``has_aux``.
    params: θ, any pytree of float arrays.
    aux_params: φ, any pytree of float arrays.
    solver: a name in `SOLVERS` (``"neumann"``, ``"cg"``, ``"exact"``; see the module
      docstring), a solver function, or a ``solve(matvec, b, **kw) -> x`` callable
      (jaxopt's ``linear_solve`` shape, `from_linear_solve`).
    symmetric: J is symmetric (G is the gradient of one scalar loss): use
      forward-over-reverse products (and conjugate gradient for ``"cg"``).
    solver_kwargs: the solver's own keyword arguments, e.g. ``{"steps": 3, "step":
      1e-4, "scale_by_step": False}`` (or ``"step": "auto"``) for ``"neumann"`` or
      ``{"maxiter": 50, "tol": 1e-5}`` for ``"cg"`` (`solver_options` lists them), and
      for every solver ``ridge`` = λ: solve (Jᵀ + λI)p = ∇_θ L_val (`solve_transposed`).
    val_loss_takes_phi: ``val_loss_fn`` is called as ``val_loss_fn(params,
      aux_params)`` and its gradient in φ is added.
    has_aux: ``val_loss_fn`` returns ``(loss, aux)``; ``aux`` is returned as is.
    neumann_steps, step, scale_by_step, maxiter, tol: the same as keyword arguments of
      their solver (``steps``/``step``/``scale_by_step`` of ``"neumann"``,
      ``maxiter``/``tol`` of ``"cg"``); ignored for other solvers. ``solver_kwargs``
      wins where both are given.

  Returns:
    (hypergradient, info): a pytree like ``aux_params`` and a `HypergradInfo`;
    (hypergradient, info, aux) with ``has_aux``.

  Raises:
    ValueError: unknown solver or solver argument, G not shaped like params, or a
      non-scalar loss.
  """
  given = {"neumann_steps": neumann_steps, "step": step, "scale_by_step": scale_by_step,
           "maxiter": maxiter, "tol": tol}
  legacy = _LEGACY_KWARGS.get(solver, {}) if isinstance(solver, str) else {}
  kwargs = {arg: given[name] for name, arg in legacy.items() if given[name] is not None}
  kwargs.update(check_solver_kwargs(solver, solver_kwargs))
  _check_inputs(lower_grad_fn, val_loss_fn, params, aux_params, val_loss_takes_phi,
                has_aux)

  # One evaluation of L_val gives v₀ and the reported loss, and one linearization of
  # G over (θ, φ) gives both the products v ↦ Jᵀv of the solver and the final
  # (∂G/∂φ)ᵀp: G's forward and backward passes run once, not once per derivative.
  if val_loss_takes_phi:
    value, (v0, direct) = jax.value_and_grad(val_loss_fn, argnums=(0, 1),
                                             has_aux=has_aux)(params, aux_params)
  else:
    value, v0 = jax.value_and_grad(val_loss_fn, has_aux=has_aux)(params)
    direct = None
  val_loss, aux = value if has_aux else (value, None)
  transpose_jacobian, dg_dphi_t = _linearize(lower_grad_fn, params, aux_params,
                                             symmetric)

  p, info = solve_transposed(transpose_jacobian, v0, solver=solver, symmetric=symmetric,
                             solver_kwargs=kwargs)

  hypergrad = optax.tree.scale(-1.0, dg_dphi_t(p))
  if direct is not None:
    hypergrad = optax.tree.add(direct, hypergrad)
  info = info._replace(diverged=info.diverged | ~all_finite(hypergrad), val_loss=val_loss)
  return (hypergrad, info, aux) if has_aux else (hypergrad, info)


# --------------------------------------------------------------------------------------
# The decorator form.


def _is_float(x) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def custom_root(
    optimality_fn: Callable[..., PyTree],
    *,
    solver: Union[str, Solver] = "cg",
    solver_kwargs: Optional[dict] = None,
    symmetric: bool = False,
    ridge: float = 0.0,
    has_aux: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Implicit differentiation of a root solver: a decorator.

  ``@custom_root(F)`` on ``inner(init_theta, *args, **kwargs) -> theta_star`` (or
  ``(theta_star, aux)`` with ``has_aux``), where ``F(theta_star, *args, **kwargs) = 0``,
  gives the same function with a custom VJP: for a cotangent c on θ* it solves
  (Jᵀ + λI) u = c with J = ∂F/∂θ at θ* (`solve_transposed`) and returns
  −(∂F/∂args)ᵀ u for ``args`` and ``kwargs`` — the implicit function theorem,
  dθ*/dargs = −J⁻¹ ∂F/∂args (Blondel et al., "Efficient and modular implicit
  differentiation", NeurIPS 2022). ``inner`` itself is never differentiated: it may
  be any solver, a ``lax.while_loop``, or a ``jax.pure_callback`` to NumPy.

  The semantics are jaxopt's ``implicit_diff.custom_root`` where they overlap:
  ``init_theta`` gets no gradient (zero); positional and keyword arguments are both
  differentiated; with ``has_aux`` the auxiliary output carries no gradient (its
  cotangent is dropped). Differences: the default linear solver is ``"cg"`` (GMRES
  unless ``symmetric=True``; jaxopt's default is CG on the normal equations), any
  `SOLVERS` name or ``solve(matvec, b)`` callable is accepted (jaxopt's ``solve=
  linear_solve.solve_cg`` works as ``solver=linear_solve.solve_cg``), ``ridge``
  applies to every solver, and ``symmetric=True`` (F the gradient of a scalar in θ)
  uses forward-over-reverse products. Only reverse mode is defined (``jax.grad``,
  ``jax.vjp``), as in jaxopt. Solver diagnostics are not returned; call
  `implicit_hypergradient` when `HypergradInfo` is needed.

  Args:
    optimality_fn: ``F(theta, *args, **kwargs) -> pytree like theta``, zero at the
      solution (e.g. ``jax.grad(inner_objective)``).
    solver: a name in `SOLVERS`, a solver function, or a ``solve(matvec, b, **kw)``
      callable.
    solver_kwargs: the solver's options (`solver_options`).
    symmetric: J = ∂F/∂θ is symmetric.
    ridge: λ ≥ 0 (also accepted as ``solver_kwargs["ridge"]``, not both).
    has_aux: ``inner`` returns ``(theta_star, aux)``.

  Returns:
    A decorator: ``custom_root(F, ...)(inner)`` has ``inner``'s signature and output.
    It works under ``jax.jit`` and ``jax.vmap`` and on pytrees. ``args`` are pytrees
    of arrays; their float leaves are differentiated, integer and boolean leaves get
    zero (float0) cotangents. A value to differentiate must be an argument: ``inner``
    and ``F`` may close over constants, and over traced values (under ``jit`` or
    ``vmap``) that are not differentiated; ``jax.grad`` with respect to a closed-over
    value raises JAX's UnexpectedTracerError (as with jaxopt).
  """
  kwargs = dict(solver_kwargs or {})
  if ridge:
    if "ridge" in kwargs:
      raise ValueError("give ridge once: custom_root(ridge=...) or solver_kwargs")
    kwargs["ridge"] = ridge
  kwargs = check_solver_kwargs(solver, kwargs)

  def decorator(inner):

    def make(keys):
      @jax.custom_vjp
      def root(init_theta, args, kwvals):
        return inner(init_theta, *args, **dict(zip(keys, kwvals)))

      def fwd(init_theta, args, kwvals):
        out = inner(init_theta, *args, **dict(zip(keys, kwvals)))
        return out, (out[0] if has_aux else out, args, kwvals)

      def bwd(res, cotangent):
        sol, args, kwvals = res
        if has_aux:
          cotangent = cotangent[0]
        # Differentiate the float leaves of (args, kwargs); the others (integers,
        # booleans) are held fixed and get float0 zeros, as jax.vjp gives them.
        leaves, treedef = jax.tree.flatten((args, kwvals))
        is_float = [_is_float(x) for x in leaves]

        def g(theta, floats):
          it = iter(floats)
          a, kv = jax.tree.unflatten(
              treedef, [next(it) if f else x for x, f in zip(leaves, is_float)])
          return optimality_fn(theta, *a, **dict(zip(keys, kv)))

        floats = [x for x, f in zip(leaves, is_float) if f]
        transpose_jacobian, dg_dargs_t = _linearize(g, sol, floats, symmetric)
        u, _ = solve_transposed(transpose_jacobian, cotangent, solver=solver,
                                symmetric=symmetric, solver_kwargs=kwargs)
        d_floats = iter(optax.tree.scale(-1.0, dg_dargs_t(u)))
        d_leaves = [next(d_floats) if f else np.zeros(np.shape(x), jax.dtypes.float0)
                    for x, f in zip(leaves, is_float)]
        d_args, d_kwvals = jax.tree.unflatten(treedef, d_leaves)
        return None, d_args, d_kwvals

      root.defvjp(fwd, bwd)
      return root

    @functools.wraps(inner)
    def wrapped(init_theta, *args, **kw):
      keys = tuple(kw)
      return make(keys)(init_theta, args, tuple(kw[k] for k in keys))

    return wrapped

  return decorator
