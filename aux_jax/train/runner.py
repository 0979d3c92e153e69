"""How a config is run: `run(config, workdir)`, for the launcher and the compare launcher.

A config's ``runner`` field (default "train") picks the protocol:

* ``train``: one `aux_jax.train.loop.train_and_evaluate` run of a weighting
  experiment (`aux_jax.train.experiment`; every method, task generation included);
* ``aang``: the same loop on AANG's experiment (`aux_jax.aang.experiment`);
* ``two_phase``: two runs of the loop, pretraining then fine-tuning
  (`aux_jax.train.two_phase`: ATTITTUD's protocol, and AANG's search followed by its
  low-learning-rate fine-tuning, with ``phase_runner = "aang"``).

Every runner returns a summary with ``method``, ``select``, ``best_dev_<select>`` and
the test metrics ``test_<metric>`` of the selected model.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from aux_jax.train import lock, loop, two_phase

RUNNERS = (*loop.EXPERIMENTS, "two_phase")


def run(config: ml_collections.ConfigDict, workdir: str,
        progress: Callable[[str], None] = print) -> dict:
  """Runs ``config`` into ``workdir`` (resumed if it holds checkpoints).

  Raises:
    ValueError: an unknown runner.
    aux_jax.train.lock.WorkdirBusy: another live run holds ``workdir``.
    aux_jax.train.loop.Interrupted: SIGTERM/SIGINT; the step was checkpointed.
  """
  runner = config.get("runner", "train")
  if runner != "two_phase" and runner not in loop.EXPERIMENTS:
    raise ValueError(f"unknown runner {runner!r}; known: {', '.join(RUNNERS)}")
  with lock.hold(workdir):  # one run per workdir (WorkdirBusy otherwise)
    if runner == "two_phase":
      return two_phase.run_two_phase(config, workdir, progress=progress)
    return loop.train_and_evaluate(config, workdir, progress=progress)
