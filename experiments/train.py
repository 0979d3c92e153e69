"""Trains one experiment from a config file.

    python -m experiments.train --config=configs/maoal_digits.py --workdir=workdirs/digits \
        [--config.method.name=gcs --config.optim.num_steps=500 ...]

Writes the resolved config, metrics (JSON lines), orbax checkpoints, the best-on-dev
checkpoint, the final test metrics and a heatmap of the learned weights into the
workdir; rerunning with the same workdir resumes from the last checkpoint.

Every device of every host trains one data-parallel program (`aux_jax.sharding`;
``--config.mesh.num_devices`` to use fewer). On a cluster, one process per host (or
per GPU), each running the same command:

    srun --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 \
        python -m experiments.train --config=... --workdir=/shared/run   # SLURM
    python -m experiments.train --config=... --workdir=/shared/run \
        --coordinator_address=host0:1234 --num_processes=2 --process_id=$I

`jax.distributed.initialize` runs when a cluster is detected (SLURM job steps with
several tasks, Open MPI) or the flags are given (``--distributed=on`` for TPU pods,
whose hosts JAX finds itself). Process 0 writes the logs, metrics and plots; all
processes write the checkpoints together, so the workdir must be on a shared disk.

The config's ``runner`` field picks how it runs (`aux_jax.train.runner`). Errors in
the configuration or the data (an unknown method, solver, partition or runner, a
missing or unprepared dataset, an override of the wrong type) end the run with one
line on stderr and exit status 2; ``--verbose`` shows the traceback. A run that
diverges (a non-finite loss or update, ``train.on_nonfinite``) ends with one line on
stderr, ``diverged: ...`` (the step, the quantity, the last checkpoint with finite
parameters), and exit status 3.

One run per workdir: a launch on a workdir that a live run holds (`aux_jax.train.lock`)
prints one line naming the holder and exits with status 2, touching nothing. SIGTERM
(a preempted SLURM job) or SIGINT saves a checkpoint of the current step, flushes the
metrics and writers, prints one line and exits with status 128 + the signal (143,
130); rerunning resumes from that step. ``--profile_steps=a,b`` writes a `jax.profiler`
trace of steps a..b into ``<workdir>/tb`` (TensorBoard's profile plugin).
"""

import json
import os
import sys
import traceback

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from aux_jax.train import lock, loop, runner

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Multi-process run (jax.distributed.initialize): 'auto' when a cluster is detected "
    "(SLURM, Open MPI) or --coordinator_address is given; 'on' lets JAX detect the "
    "cluster (TPU pods).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for a multi-process run.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0-based.")
_PROFILE_STEPS = flags.DEFINE_string(
    "profile_steps", None, "'a,b': a jax.profiler trace of steps a..b in "
    "<workdir>/tb (TensorBoard's profile plugin); sets config.train.profile_steps.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the traceback of a configuration "
                             "or data error.")

# What a wrong config, a wrong override or missing data raise: one line, status 2.
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError)
USAGE_ERROR_STATUS = 2
# A run the non-finite guard ended (summary "status": "diverged").
DIVERGED_STATUS = 3


def distributed_settings(env, coordinator_address=None, num_processes=None,
                         process_id=None, mode: str = "auto"):
  """The keyword arguments of `jax.distributed.initialize`, or None for one process.

  Args:
    env: the environment variables (`os.environ`).
    coordinator_address, num_processes, process_id: the explicit flags, or None.
    mode: "auto" (a cluster is detected or flags are given), "on", or "off".

  Returns:
    None (no multi-process run), or a dict: the explicit flags, JAX detecting the
    rest; under SLURM with one task per node, ``local_device_ids`` every GPU of the
    node (JAX's default is one GPU per task).

  Raises:
    ValueError: explicit flags incomplete with no cluster to fill them in.
  """
  if mode == "off":
    return None
  explicit = {k: v for k, v in (("coordinator_address", coordinator_address),
                                ("num_processes", num_processes),
                                ("process_id", process_id)) if v is not None}
  slurm = (all(k in env for k in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID",
                                  "SLURM_LOCALID"))
           and int(env.get("SLURM_NTASKS", "1")) > 1)
  ompi = "OMPI_MCA_orte_hnp_uri" in env  # what JAX reads (Open MPI 4 `mpirun`)
  if not (explicit or slurm or ompi or mode == "on"):
    return None
  missing = [f"--{k}" for k in ("coordinator_address", "num_processes", "process_id")
             if k not in explicit]
  if explicit and missing and not (slurm or ompi or mode == "on"):
    raise ValueError(f"a multi-process run outside a detected cluster needs "
                     f"{', '.join(missing)} as well")
  if (slurm and "JAX_LOCAL_DEVICE_IDS" not in env and env.get("SLURM_GPUS_ON_NODE")
      and env.get("SLURM_STEP_NUM_TASKS") == env.get("SLURM_STEP_NUM_NODES")):
    explicit["local_device_ids"] = list(range(int(env["SLURM_GPUS_ON_NODE"])))
  return explicit


def user_error(exc: BaseException) -> str:
  """The one line a configuration or data error prints: ``error: <message>``."""
  message = " ".join(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
                     .split()) or type(exc).__name__
  return f"error: {message} (--verbose for the traceback)"


def parse_flags(argv):
  """absl's flag parsing, with a flag error (e.g. an override of the wrong type, an
  unknown config field) reported as one line and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(user_error(e), file=sys.stderr)
    sys.exit(USAGE_ERROR_STATUS)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Progress lines are printed; keep the libraries' (orbax, tfds) logs out of them.
  logging.set_verbosity(logging.ERROR)
  try:
    settings = distributed_settings(os.environ, _COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value, _DISTRIBUTED.value)
    if settings is not None:  # before any JAX computation
      jax.distributed.initialize(**settings)
    config = _CONFIG.value
    if _PROFILE_STEPS.value is not None:
      with config.unlocked():
        config.train.profile_steps = _PROFILE_STEPS.value
    summary = runner.run(config, _WORKDIR.value,
                         progress=lambda line: print(line, flush=True))
  except lock.WorkdirBusy as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(USAGE_ERROR_STATUS)
  except loop.Interrupted as e:
    if jax.process_index() == 0:
      print(str(e), file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  except USER_ERRORS as e:
    if _VERBOSE.value:
      traceback.print_exc()
    print(user_error(e), file=sys.stderr)
    sys.exit(USAGE_ERROR_STATUS)
  if jax.process_index() == 0:
    print(json.dumps(summary, indent=2))
  if summary.get("status") == "diverged":
    if jax.process_index() == 0:
      print(summary["diverged_message"], file=sys.stderr, flush=True)
    sys.exit(DIVERGED_STATUS)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
