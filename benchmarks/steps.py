"""Step timings on the CIFAR-100/20 setup with random inputs (DESIGN §4).

    python benchmarks/steps.py [--batch=32 --width=64 --dtype=float32 --repeats=20] \
        [--out=benchmarks/results/steps_<device>.json]

Measures, after compilation and with ``block_until_ready``: SLL, Equal and GCS steps,
MAOAL lower and upper steps, AuxL lower and upper steps, and the MAOAL iteration with
the upper step every ``interval`` lower steps. Prints one JSON line per phase (median
and minimum in ms, ratio to this run's Equal step, device, JAX version, batch sizes,
peak device memory where the backend reports it). Tiny flags make a CPU smoke run
(tests/benchmarks/test_steps.py); timings are only meaningful on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aux_jax.data.multitask import MultiTaskData  # noqa: E402
from aux_jax.train.experiment import build_experiment  # noqa: E402
from configs import maoal_cifar100_20  # noqa: E402


def random_data(num_tasks: int, per_task: int, dev: int, size: int = 32,
                seed: int = 0) -> MultiTaskData:
  """Random u8 images and 5-way labels with the CIFAR-100/20 shapes."""
  rng = np.random.default_rng(seed)
  img = lambda *s: rng.integers(0, 256, s + (size, size, 3), dtype=np.uint8)
  lab = lambda *s: rng.integers(0, 5, s).astype(np.int32)
  return MultiTaskData(
      train_images=img(num_tasks, per_task), train_labels=lab(num_tasks, per_task),
      train_counts=np.full(num_tasks, per_task, np.int32),
      num_classes=np.full(num_tasks, 5, np.int32),
      dev_images=img(dev), dev_labels=lab(dev), test_images=img(dev), test_labels=lab(dev),
      task_names=tuple(f"task{t}" for t in range(num_tasks)),
      mean=np.full(3, 127.5, np.float32), std=np.full(3, 64.0, np.float32))


def _time(fn, state, repeats):
  state, out = fn(state)  # compile
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, out = fn(state)
    jax.block_until_ready(out)
    times.append(1e3 * (time.perf_counter() - t0))
  return state, times


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def run(batch=32, dev_batch=100, width=64, dtype="float32", repeats=20, interval=10,
        num_tasks=11, stage_sizes=(2, 2, 2, 2), print_fn=print) -> list[dict]:
  """Times every phase; returns the JSON records (also printed, one per line)."""
  data = random_data(num_tasks, per_task=4 * batch, dev=2 * dev_batch)
  base = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
          "jax": jax.__version__, "tasks": num_tasks, "batch_per_task": batch,
          "dev_batch": dev_batch, "width": width, "dtype": dtype}
  phases = {}
  for method in ("stl", "equal", "gcs", "maoal", "auxl"):
    cfg = maoal_cifar100_20.get_config(method)
    cfg.data.batch_size, cfg.data.dev_batch_size = batch, dev_batch
    cfg.model.kwargs.width = width
    cfg.model.kwargs.stage_sizes = tuple(stage_sizes)
    cfg.model.dtype = dtype
    cfg.hyper.interval = interval
    exp = build_experiment(cfg, data)
    state = exp.init()
    name = {"maoal": "maoal_lower", "auxl": "auxl_lower"}.get(method, method)
    state, phases[name] = _time(exp.lower_step, state, repeats)
    if exp.method.learnable:
      state, phases[f"{method}_upper"] = _time(exp.upper_step, state,
                                               max(3, repeats // 4))
    if method == "maoal":
      def iteration(s):
        for _ in range(interval):
          s, m = exp.lower_step(s)
        return exp.upper_step(s)
      state, per = _time(iteration, state, max(2, repeats // 10))
      phases["maoal_iteration"] = [t / interval for t in per]
  equal = statistics.median(phases["equal"])
  records = []
  for name, times in phases.items():
    med = statistics.median(times)
    rec = {**base, "phase": name, "median_ms": round(med, 3),
           "min_ms": round(min(times), 3), "ratio_to_equal": round(med / equal, 3),
           "repeats": len(times), "peak_bytes": _peak_bytes()}
    records.append(rec)
    print_fn(json.dumps(rec))
  return records


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--dev_batch", type=int, default=100)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--interval", type=int, default=10)
  p.add_argument("--out", default=None, help="also write the records to this JSON file")
  a = p.parse_args()
  records = run(a.batch, a.dev_batch, a.width, a.dtype, a.repeats, a.interval)
  if a.out:
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":
  main()
