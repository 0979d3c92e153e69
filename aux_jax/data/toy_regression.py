"""SLGrad's synthetic toy regression: tasks related through a shared linear map.

The generator of Grégoire et al., "Sample-Level Weighting for Multi-Task Learning
with Auxiliary Tasks" (2023), a variant of GradNorm's toy problem (Chen et al., ICML
2018). With a shared row `B ∈ R^D`, per-task perturbations `ε_t ∈ R^D` and scales
`σ_t`, every example `x ∈ R^D` has one scalar target per task:

    x ~ N(0, I_D),   B ~ N(0, 1)^D,   ε_t ~ N(0, 3.5)^D   (3.5 is the variance),
    y_t(x) = | σ_t · tanh((B + ε_t) · x) |.

Task 0 is the main task. Defaults follow the original's toy example: 2 tasks,
`D = 250`, `σ = (1, 1)`, `N = 1000` split 60/20/20 % into train/dev/test (600/200/200).
With `D = 250` the pre-activation has std ≈ √(4.5·250) ≈ 34, so tanh mostly saturates
and most targets are close to σ_t: the signal lies near the hyperplane
`(B + ε_t) · x = 0`.

Label noise (training split only; dev and test stay clean): for each noisy task
(``noise_tasks``: "all", the original's default ``onlymain=False``, vub-dl/SLGrad
``Data/Datasets.py:60-86``, each task its own rows; or "main", task 0 only), exactly
`round(noise · N_train)` training rows, chosen uniformly without replacement, get
that task's target replaced, depending on ``noise_kind``:

* ``"replace"``: a draw from `N(0, s²)`, `s` = std of the clean main training
  targets: values unrelated to `x`, on the targets' own scale (often negative,
  which a clean target never is).
* ``"constant"``: the constant −0.5 (the original's default "random points"; the
  default here).
* ``"gaussian"``: a draw from `N(0, 0.2²)` (the original's "Gaussian" noise).

Randomness, all from `rng = np.random.default_rng(seed)`, drawn in this order (so
tests can recompute it): `B = rng.normal(0, 1, D)`; `ε = rng.normal(0, √3.5, (T, D))`;
`x = rng.normal(0, 1, (N, D))`; `perm = rng.permutation(N)` (train = first
`N_train` rows of `perm`, dev = next `N_dev`, test = the rest, each in `perm`
order); then per noisy task t = 0, 1, ... in order: `rows_t = rng.choice(N_train, k,
replace=False)` (in draw order) and its replacement values (``"replace"``:
`rng.normal(0, s_t, k)` with s_t the std of task t's clean training targets,
``"gaussian"``: `rng.normal(0, 0.2, k)`). Targets are computed in float64 and
stored as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from aux_jax.data.shared_input import SharedInputData

EPS_VARIANCE = 3.5
NOISE_KINDS = ("replace", "constant", "gaussian")
NOISE_TASKS = ("all", "main")
CONSTANT_NOISE = -0.5
GAUSSIAN_NOISE_STD = 0.2


def split_sizes(num_samples: int) -> tuple[int, int, int]:
  """`(N_train, N_dev, N_test)`: `⌊3N/5⌋`, `⌊N/5⌋` and the rest (60/20/20 %)."""
  n_train, n_dev = 3 * num_samples // 5, num_samples // 5
  return n_train, n_dev, num_samples - n_train - n_dev


def toy_targets(x: np.ndarray, b: np.ndarray, eps: np.ndarray,
                sigmas: np.ndarray) -> np.ndarray:
  """`y[t, n] = |σ_t tanh((B + ε_t) · x_n)|`: `f64[N, D] -> f64[T, N]`."""
  w = np.asarray(b, np.float64)[None, :] + np.asarray(eps, np.float64)   # [T, D]
  pre = np.asarray(x, np.float64) @ w.T                                   # [N, T]
  return np.abs(np.asarray(sigmas, np.float64)[:, None] * np.tanh(pre.T))


def _check_args(num_tasks, num_samples, input_dim, noise, noise_kind, sigmas,
                noise_tasks="all"):
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
  if input_dim < 1:
    raise ValueError(f"input_dim must be >= 1, got {input_dim}")
  if min(split_sizes(num_samples)) < 1:
    raise ValueError(f"num_samples={num_samples} leaves an empty split "
                     f"(60/20/20 %); use at least 5")
  if not 0.0 <= noise <= 1.0:
    raise ValueError(f"noise must be a fraction in [0, 1], got {noise}")
  if noise_kind not in NOISE_KINDS:
    raise ValueError(f"unknown noise_kind {noise_kind!r}; expected one of {NOISE_KINDS}")
  if noise_tasks not in NOISE_TASKS:
    raise ValueError(f"unknown noise_tasks {noise_tasks!r}; expected one of "
                     f"{NOISE_TASKS}")
  if len(sigmas) != num_tasks:
    raise ValueError(f"sigmas has {len(sigmas)} entries for num_tasks={num_tasks}")


def load_toy_regression(
    num_tasks: int = 2,
    num_samples: int = 1000,
    input_dim: int = 250,
    noise: float = 0.0,
    noise_kind: str = "constant",
    noise_tasks: str = "all",
    sigmas: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> SharedInputData:
  """Generates the toy regression problem (see the module docstring).

  Args:
    num_tasks: T, main task included.
    num_samples: N, all splits together (60/20/20 % train/dev/test).
    input_dim: D, the input dimension.
    noise: fraction of each noisy task's training targets replaced by noise.
    noise_kind: "constant" (the original's default), "replace" or "gaussian"
      (module docstring).
    noise_tasks: "all" (the original's default) or "main".
    sigmas: `T` scales σ_t; None: all 1 (the original's setting).
    seed: fixes everything (the draw order is in the module docstring).

  Returns:
    A validated `SharedInputData`: inputs `f32[N_split, D]` (mean/std None), targets
    `f32[N_split, 1]` per task, all tasks "regression" with 1 output, task names
    "main", "aux1", ..., `train_info["noisy"]` `bool[N_train]` marking the rows
    whose main target was replaced and `train_info["noisy_tasks"]` `bool[N_train, T]`
    those of every task.

  Raises:
    ValueError: on bad arguments.
  """
  sigmas = np.ones(num_tasks) if sigmas is None else np.asarray(sigmas, np.float64)
  _check_args(num_tasks, num_samples, input_dim, noise, noise_kind, sigmas, noise_tasks)
  rng = np.random.default_rng(seed)
  b = rng.normal(0.0, 1.0, input_dim)
  eps = rng.normal(0.0, np.sqrt(EPS_VARIANCE), (num_tasks, input_dim))
  x = rng.normal(0.0, 1.0, (num_samples, input_dim))
  y = toy_targets(x, b, eps, sigmas)                                       # [T, N]
  perm = rng.permutation(num_samples)
  n_train, n_dev, _ = split_sizes(num_samples)
  idx = {"train": perm[:n_train], "dev": perm[n_train:n_train + n_dev],
         "test": perm[n_train + n_dev:]}
  splits = {s: (x[i].astype(np.float32), [y[t, i] for t in range(num_tasks)])
            for s, i in idx.items()}

  # Noise on the training targets of every task, or of the main task only.
  k = int(round(noise * n_train))
  noisy_tasks = np.zeros((n_train, num_tasks), bool)
  for t in range(num_tasks if noise_tasks == "all" else 1):
    rows = rng.choice(n_train, k, replace=False)
    y_t = splits["train"][1][t]
    if noise_kind == "replace":
      values = rng.normal(0.0, float(np.std(y_t)), k)
    elif noise_kind == "gaussian":
      values = rng.normal(0.0, GAUSSIAN_NOISE_STD, k)
    else:
      values = np.full(k, CONSTANT_NOISE)
    y_t[rows] = values
    noisy_tasks[rows, t] = True

  def targets(split):
    return tuple(v.astype(np.float32)[:, None] for v in splits[split][1])

  names = ("main",) + tuple(f"aux{t}" for t in range(1, num_tasks))
  return SharedInputData(
      train_inputs=splits["train"][0], train_targets=targets("train"),
      dev_inputs=splits["dev"][0], dev_targets=targets("dev"),
      test_inputs=splits["test"][0], test_targets=targets("test"),
      task_names=names,
      task_kinds=("regression",) * num_tasks,
      num_outputs=(1,) * num_tasks,
      train_info={"noisy": noisy_tasks[:, 0], "noisy_tasks": noisy_tasks},
  ).validate()
