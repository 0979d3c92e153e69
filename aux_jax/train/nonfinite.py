"""Non-finite training steps: detected inside the jitted step, never applied, reported.

`guarded(step_fn, level, limit)` wraps a pure step ``state -> (state, metrics)`` whose
state is a NamedTuple with an ``i32[]`` field ``step`` and a `Guard` field ``guard``.
After the step it tests, on device (no host read):

    ok = every loss metric (a name starting with "loss" or ending in "loss") is finite
         and every floating element of the new state (parameters, optimizer state,
         φ, ...) is finite or unchanged (an initial +inf sentinel is no divergence)

If not ``ok`` the update is not applied: the new state is the old one with only
``step`` advanced (as ``optax.apply_if_finite`` does for one optimizer, here for the
whole step), and the `Guard` counts it. ``consecutive`` counts skipped updates since
the last applied lower-level step; when it first exceeds ``limit`` the guard records
that step and the quantity found non-finite (``stop_step``, ``stop_what``). The loop
(`aux_jax.train.loop`) reads the guard only where it already reads the device (log,
evaluation and checkpoint steps) and ends the run when ``stop_step > 0``; since the
step is recorded on device, the run names the first offending step even if it lies
between two such reads. ``train.on_nonfinite``:

* ``"stop"`` (default): ``limit = 0``: the first non-finite loss or update ends the run;
* ``"skip"``: ``limit = train.max_consecutive_nonfinite``: isolated non-finite updates
  are skipped (``nonfinite_skipped`` in the metrics and the summary); more than
  ``limit`` in a row end the run as "stop" does.

Testing hook: the loop sets ``Guard.poison`` to NaN before the step named by the
failpoint ``nan_loss@N`` (``$AUX_JAX_FAILPOINT``, see `aux_jax.train.loop`); the
lower step adds it to its loss metrics, as a diverged loss would be. Every step resets
it to 0.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from aux_jax.hypergrad import all_finite

PyTree = Any
MODES = ("stop", "skip")
LEVELS = ("lower", "upper")

# Names of the quantities a guard tests, in the order first traced; `Guard.stop_what`
# is 1 + an index into it. Filled while tracing (the same names in every process).
_QUANTITIES: list[str] = []


class Guard(NamedTuple):
  """The non-finite bookkeeping carried in an experiment's state.

  Attributes:
    skipped: i32[], updates not applied because they were non-finite.
    consecutive: i32[], updates skipped since the last applied lower-level step.
    stop_step: i32[], the step at which ``consecutive`` first exceeded the limit (the
      loop's step numbering: the lower step taking ``step`` s → s + 1 is step s + 1);
      0 = never.
    stop_what: i32[], the quantity found non-finite there (`describe`); 0 = none.
    poison: f32[], added to the lower step's loss metrics (the ``nan_loss`` failpoint);
      0 except for one step in tests.
  """

  skipped: jax.Array
  consecutive: jax.Array
  stop_step: jax.Array
  stop_what: jax.Array
  poison: jax.Array


def init() -> Guard:
  zero = jnp.zeros((), jnp.int32)
  return Guard(zero, zero, zero, zero, jnp.zeros((), jnp.float32))


def limit_from_config(config: ml_collections.ConfigDict) -> int:
  """Skipped updates in a row that end the run: 0 for ``train.on_nonfinite="stop"``,
  ``train.max_consecutive_nonfinite`` (default 10) for "skip".

  Raises:
    ValueError: an unknown mode or a negative limit.
  """
  train = config.get("train", ml_collections.ConfigDict())
  mode = train.get("on_nonfinite", "stop")
  if mode not in MODES:
    raise ValueError(f"train.on_nonfinite must be one of {MODES}, got {mode!r}")
  if mode == "stop":
    return 0
  limit = int(train.get("max_consecutive_nonfinite", 10))
  if limit < 0:
    raise ValueError(f"train.max_consecutive_nonfinite must be >= 0, got {limit}")
  return limit


def describe(code: int) -> str:
  """The quantity of a `Guard.stop_what` code, e.g. "lower-level loss_main"."""
  return _QUANTITIES[code - 1] if 0 < code <= len(_QUANTITIES) else "unknown quantity"


def _code(name: str) -> int:
  if name not in _QUANTITIES:
    _QUANTITIES.append(name)
  return _QUANTITIES.index(name) + 1


def _is_loss(name: str) -> bool:
  return name.startswith("loss") or name.endswith("loss")


def _finite_or_unchanged(new: PyTree, old: PyTree) -> jax.Array:
  """bool[]: every floating element of ``new`` is finite or equal to its value in
  ``old`` (a sentinel such as the plateau rule's initial best value +inf is no
  divergence; NaN never equals itself)."""
  oks = [jnp.all(jnp.isfinite(n) | (n == o)) for n, o in zip(jax.tree.leaves(new),
                                                              jax.tree.leaves(old))
         if jnp.issubdtype(jnp.result_type(n), jnp.inexact)]
  return jnp.all(jnp.stack(oks)) if oks else jnp.array(True)


def guarded(step_fn: Callable[..., tuple[PyTree, dict]], level: str, limit: int
            ) -> Callable[..., tuple[PyTree, dict]]:
  """``step_fn`` with its non-finite updates skipped and counted (module docstring).

  Args:
    step_fn: ``(state, *args) -> (state, metrics)``, pure (to be jitted by the caller).
    level: "lower" (a training step: advances ``step``; reads ``Guard.poison``) or
      "upper" (e.g. a hypergradient step, after the lower step of the same number).
    limit: consecutive skipped updates allowed (`limit_from_config`).

  Returns:
    The guarded step, same signature; its metrics gain ``nonfinite_skipped`` (i32[],
    1 if this update was not applied).
  """
  if level not in LEVELS:
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")

  def run(state, *args):
    new, metrics = step_fn(state, *args)
    metrics = dict(metrics)
    old_guard = state.guard
    if level == "lower":
      metrics.update({k: v + old_guard.poison for k, v in metrics.items() if _is_loss(k)})
    checks = [(_code(f"{level}-level {k}"), all_finite(v))
              for k, v in metrics.items() if _is_loss(k)]
    checks.append((_code(f"{level}-level update (parameters or optimizer state)"),
                   _finite_or_unchanged(new._replace(guard=None), state._replace(guard=None))))
    finite = jnp.stack([c for _, c in checks])
    ok = jnp.all(finite)
    what = jnp.asarray([c for c, _ in checks], jnp.int32)[jnp.argmin(finite)]
    number = new.step  # lower: s + 1 after step s; upper: the lower step just taken
    if level == "lower":
      consecutive = jnp.where(ok, 0, old_guard.consecutive + 1)
    else:
      consecutive = old_guard.consecutive + (~ok).astype(jnp.int32)
    first = (old_guard.stop_step == 0) & (consecutive > limit)
    guard = Guard(
        skipped=old_guard.skipped + (~ok).astype(jnp.int32), consecutive=consecutive,
        stop_step=jnp.where(first, number, old_guard.stop_step),
        stop_what=jnp.where(first, what, old_guard.stop_what),
        poison=jnp.zeros_like(old_guard.poison))
    kept = jax.tree.map(lambda n, o: jax.lax.select(ok, n, o),
                        new._replace(guard=old_guard), state)
    metrics["nonfinite_skipped"] = (~ok).astype(jnp.int32)
    return kept._replace(step=new.step, guard=guard), metrics

  return run


def poison(state: PyTree) -> PyTree:
  """``state`` whose next lower step sees a NaN loss (the ``nan_loss`` failpoint)."""
  return state._replace(guard=state.guard._replace(poison=jnp.float32(jnp.nan)))
