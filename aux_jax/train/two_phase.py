"""Pretrain with auxiliary data, then fine-tune on the main task alone (ATTITTUD's protocol).

Dery et al. (ICLR 2021, "Auxiliary Task Update Decomposition") pretrain
a model on the main and auxiliary tasks (ATTITTUD's decomposed auxiliary updates, or
a baseline), early-stopping on the main task's monitor (dev) set, then fine-tune it on
the main task alone with a small learning rate (Adam 5e-5).

    phase 1  "pretrain": `train_and_evaluate(cfg1, <workdir>/pretrain)`; cfg1 = the
             config as it is (its method, data, optim, train; ``train.patience``
             for early stopping on the dev set, ``train.select`` its metric).
    phase 2  "finetune" (only when ``config.finetune.enabled``):
             `train_and_evaluate(cfg2, <workdir>/finetune)`; cfg2 = the config with
             ``method.name = "stl"`` (no method kwargs), ``data.kwargs.primary_only
             = True`` (the loader leaves the auxiliary tasks out: T = 1),
             ``train.init_from = <workdir>/pretrain`` (its best-on-dev model
             initialises the backbone, BatchNorm statistics and the main head), then
             every other entry of ``config.finetune`` merged over the section of
             the same name (e.g. ``finetune.optim = {name: adam, lr: 5e-5,
             num_steps: ...}``, ``finetune.train = {patience: ...}``).

The result is the last phase's summary (best-on-dev test metrics) with both phases'
summaries under ``pretrain`` and ``finetune``. With this one runner the rows
of ATTITTUD's comparison are config choices (see ``configs/attittud_cifar10.py``):
single-task (``stl`` + ``primary_only``, no fine-tuning), multitask (``equal``, no
fine-tuning), pretrain-then-finetune (``equal``, fine-tuning) and ATTITTUD
(``attittud`` with ``lambdas``, fine-tuning).

With ``finetune.keep_if_better`` the result is phase 1's when phase 2 does not improve
its best dev metric (AANG's final fine-tuning, ``configs/aang_citation_intent.py``).

Workdir layout: ``pretrain/`` and ``finetune/`` (each a `train_and_evaluate` workdir)
and ``summary.json``. Rerunning with the same workdir resumes: each phase resumes
from its own checkpoints, and a finished (or early-stopped) phase is not trained
again.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import ml_collections

from aux_jax.train import loop

PHASES = ("pretrain", "finetune")


def _unlocked_copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  cfg = config.copy_and_resolve_references()
  cfg.unlock()
  return cfg


def phase_configs(config: ml_collections.ConfigDict, workdir: str
                  ) -> list[tuple[str, ml_collections.ConfigDict]]:
  """The phases' configs: ``[("pretrain", cfg1)]`` or with ``("finetune", cfg2)``.

  Args:
    config: a two-phase config: a training config plus ``finetune`` (a ConfigDict
      with ``enabled`` and sections merged into phase 2's config; see the module
      docstring). No ``finetune`` field: one phase.
    workdir: the run's output directory (phase 2 initialises from
      ``<workdir>/pretrain``).

  Returns:
    ``(name, config)`` per phase, configs unlocked copies with ``runner`` = the
    config's ``phase_runner`` (default "train") and no ``finetune`` field.

  Raises:
    ValueError: ``finetune`` names a section the config does not have.
  """
  finetune = config.get("finetune", None)
  first = _unlocked_copy(config)
  if "finetune" in first:
    del first["finetune"]
  # Each phase runs on the loop with the experiment of ``phase_runner`` (e.g. "aang").
  first.runner = config.get("phase_runner", "train")
  phases = [(PHASES[0], first)]
  if finetune is None or not finetune.get("enabled", False):
    return phases
  second = _unlocked_copy(first)
  second.method = ml_collections.ConfigDict(
      {"name": "stl", "partition": first.method.get("partition", "global"),
       "kwargs": ml_collections.ConfigDict()})
  if "kwargs" not in second.data:
    second.data.kwargs = ml_collections.ConfigDict()
  second.data.kwargs.primary_only = True
  second.train.init_from = os.path.abspath(os.path.join(workdir, PHASES[0]))
  for key, value in finetune.items():
    if key in ("enabled", "keep_if_better"):
      continue
    if key not in second:
      raise ValueError(f"finetune.{key}: the config has no section {key!r} to override "
                       f"(it has {sorted(second.keys())})")
    if isinstance(value, ml_collections.ConfigDict):
      second[key].update(value)
    else:
      second[key] = value
  phases.append((PHASES[1], second))
  return phases


def run_two_phase(config: ml_collections.ConfigDict, workdir: str,
                  progress: Callable[[str], None] = print) -> dict:
  """Runs phase 1 and (if enabled) phase 2; writes ``<workdir>/summary.json``.

  Args:
    config: a two-phase config (see `phase_configs`).
    workdir: output directory (resumed if it exists).
    progress: receives the progress lines of both phases.

  Returns:
    The final phase's summary (`aux_jax.train.loop.train_and_evaluate`) with
    ``method`` = the config's ``variant`` (if set), ``final_phase``, and
    ``pretrain`` / ``finetune``: each phase's summary (``finetune`` None if off).
    A phase that diverges (``"status": "diverged"``) is the final one: its summary
    is the result, and fine-tuning does not start after a diverged pretraining.
  """
  os.makedirs(workdir, exist_ok=True)
  phases = {"pretrain": None, "finetune": None}
  for name, cfg in phase_configs(config, workdir):
    progress(f"== phase {name}: method {cfg.method.name}, data {cfg.data.name} "
             f"{dict(cfg.data.get('kwargs', {}))}")
    phases[name] = loop.train_and_evaluate(
        cfg, os.path.join(workdir, name), progress=lambda line, n=name: progress(f"[{n}] {line}"))
    final = name
    if phases[name].get("status") == "diverged":  # the result is this phase's; no next one
      break
  finetune = config.get("finetune", None)
  if (final == "finetune" and finetune is not None and finetune.get("keep_if_better", False)
      and phases[final].get("status") != "diverged"):
    # AANG's rule (scripts/autoaux.py:466-473): the fine-tuned model counts only if its
    # best dev score beats the pretrained one's.
    key = f"best_dev_{phases['pretrain']['select']}"
    tuned, pretrained = phases["finetune"][key], phases["pretrain"][key]  # None: no model
    if tuned is None or (pretrained is not None and not tuned > pretrained):
      final = "pretrain"
  result = {**phases[final], "final_phase": final, **phases}
  if config.get("variant", ""):
    result["method"] = config.variant
  tmp = os.path.join(workdir, "summary.json.tmp")
  with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(tmp, os.path.join(workdir, "summary.json"))
  return result
