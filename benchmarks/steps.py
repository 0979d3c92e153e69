"""The structure and the speed of every training step, on the CIFAR-100/20 shapes with
random inputs.

    python -m benchmarks.steps [--methods=all] [--batch=8 --dev_batch=20 --width=16 \
        --stage_sizes=1,1,1,1 --tasks=11 --dtype=float32 --repeats=10] \
        [--out=benchmarks/results/steps_<device>.json]

For every method of `aux_jax.methods.METHODS` its lower step (phase = the method's
name; ``taskgen`` in its own setting: the same T·B images as one task plus AuxiLearn's
generated sub-class task), the upper step of the learnable ones (``<method>_upper``), MAOAL's iteration
(``interval`` lower steps and one upper step, per lower step), MAOAL's reference
M-pass lower step (``maoal_lower_per_module``) and each way of taking per-task
gradients alone (``per_task_grads_<way>``). For each phase, from XLA's compiled
program (device independent up to the compiler's choices):

* ``flops`` (compiled cost analysis; with ``--unroll`` the Neumann series and the
  loops over tasks are unrolled, since the analysis counts a loop's body once; the
  other loops (CAGrad's simplex solver, PCGrad's projections) still count one
  iteration, ATTITTUD's basis rebuild (a ``lax.cond``) its costlier branch) and
  ``flops_to_equal``, the ratio to the Equal step's;
* ``grouped_convs``: convolutions with ``feature_group_count`` or
  ``batch_group_count`` > 1 in the lowered program (what `vmap` over stacked
  parameters makes; slow kernels in cuDNN);
* ``temp_bytes``: the compiled program's scratch memory;

and, timed after compilation with ``block_until_ready``: ``median_ms``, ``min_ms``,
``time_to_equal``, ``peak_bytes`` (where the backend reports it). Each record also
holds the device, backend, JAX/jaxlib versions and the shapes. Timings are only
meaningful on the machine they name.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jaxlib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aux_jax.data.multitask import MultiTaskData  # noqa: E402
from aux_jax.methods import METHODS  # noqa: E402
from aux_jax.methods import base as base_module  # noqa: E402
from aux_jax.methods.base import PER_TASK_GRADS, per_task_grads  # noqa: E402
from aux_jax.train.experiment import build_experiment  # noqa: E402
from aux_jax.data.shared_input import with_subclass_task  # noqa: E402
from configs import auxilearn_taskgen_cifar10, maoal_cifar100_20  # noqa: E402

_GROUP = re.compile(r"(feature_group_count|batch_group_count)\s*=\s*(\d+)")


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


def grouped_convs(hlo_text: str) -> int:
  """Convolutions with a feature or batch group count above 1 in an HLO/StableHLO text
  (a convolution carrying both counts is counted once)."""
  n = 0
  for line in hlo_text.splitlines():
    if any(int(v) > 1 for _, v in _GROUP.findall(line)):
      n += 1
  return n


def _flops(compiled) -> Optional[float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return None if not cost or "flops" not in cost else float(cost["flops"])


def _temp_bytes(compiled) -> Optional[int]:
  try:
    return int(compiled.memory_analysis().temp_size_in_bytes)
  except Exception:  # noqa: BLE001 -- not every backend reports it
    return None


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def measure(fn: Callable, arg, repeats: int, carry: bool = True):
  """Compiles ``fn(arg)``; returns (structure dict, times in ms, last output).

  With ``carry``, ``fn`` maps a state to ``(state, metrics)`` and each timed call
  gets the state of the previous one.
  """
  t0 = time.perf_counter()
  lowered = jax.jit(fn).lower(arg)
  lower_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  compiled = lowered.compile()
  info = {"flops": _flops(compiled), "grouped_convs": grouped_convs(lowered.as_text()),
          "grouped_convs_compiled": grouped_convs(compiled.as_text() or ""),
          "temp_bytes": _temp_bytes(compiled),
          "lower_s": round(lower_s, 2), "compile_s": round(time.perf_counter() - t0, 2)}
  out = compiled(arg)
  jax.block_until_ready(out)
  times = []
  for _ in range(repeats):
    if carry:
      arg = out[0]
    t0 = time.perf_counter()
    out = compiled(arg)
    jax.block_until_ready(out)
    times.append(1e3 * (time.perf_counter() - t0))
  return info, times, out


def _config(method: str, batch, dev_batch, width, stage_sizes, dtype, interval,
            per_task: str, maoal_lower: str, unroll: bool, num_tasks: int = 1):
  if method == "taskgen":  # its own setting: one task and its generated sub-class task
    cfg = auxilearn_taskgen_cifar10.get_config("learned")
    batch = num_tasks * batch
  else:
    cfg = maoal_cifar100_20.get_config(method)
  cfg.data.batch_size, cfg.data.dev_batch_size = batch, dev_batch
  cfg.data.augment = False
  cfg.model.kwargs.width = width
  cfg.model.kwargs.stage_sizes = tuple(stage_sizes)
  cfg.model.dtype = dtype
  cfg.hyper.interval = interval
  cfg.method.per_task_grads = per_task
  # XLA's cost analysis counts a loop body once: unroll the Neumann series.
  cfg.hyper.solver_kwargs.neumann.unroll = unroll
  if method == "gradnorm":  # the last shared layer of this depth
    cfg.method.kwargs.layer = rf"^stage4/block{stage_sizes[-1] - 1}/conv2/"
  if method == "maoal":
    cfg.method.kwargs.lower = maoal_lower
  return cfg


def run(methods: Sequence[str] = METHODS, batch: int = 8, dev_batch: int = 20,
        width: int = 16, stage_sizes: Sequence[int] = (1, 1, 1, 1), num_tasks: int = 11,
        dtype: str = "float32", repeats: int = 10, interval: int = 10,
        per_task: str = "auto", maoal_lower: str = "one_pass",
        compare_ways: bool = True, iteration: bool = True, image_size: int = 32,
        unroll: bool = True, upper: bool = True, reference: bool = True,
        print_fn=print) -> list[dict]:
  """Measures every phase; returns the records (also printed, one JSON line each).

  ``methods`` always gets ``equal`` added (the ratios' reference); ``compare_ways``
  adds the per-task-gradient ways, ``reference`` MAOAL's M-pass lower step (when
  ``maoal`` is measured), ``upper`` the upper steps, ``iteration`` MAOAL's iteration; ``unroll`` unrolls the Neumann series and
  the loops over tasks (`aux_jax.methods.base.UNROLL_TASK_LOOPS`) so that the FLOPs
  count every iteration (the timings are then of the unrolled programs).
  """
  previous, base_module.UNROLL_TASK_LOOPS = base_module.UNROLL_TASK_LOOPS, unroll
  try:
    return _run(methods, batch, dev_batch, width, stage_sizes, num_tasks, dtype, repeats,
                interval, per_task, maoal_lower, compare_ways, iteration and upper,
                image_size, unroll, upper, reference, print_fn)
  finally:
    base_module.UNROLL_TASK_LOOPS = previous


def _run(methods, batch, dev_batch, width, stage_sizes, num_tasks, dtype, repeats,
         interval, per_task, maoal_lower, compare_ways, iteration, image_size, unroll,
         upper, reference, print_fn):
  methods = ["equal"] + [m for m in methods if m != "equal"]
  data = random_data(num_tasks, per_task=4 * batch, dev=2 * dev_batch, size=image_size)
  base = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "tasks": num_tasks, "batch_per_task": batch, "dev_batch": dev_batch,
          "width": width, "stage_sizes": list(stage_sizes), "image_size": image_size,
          "dtype": dtype,
          "per_task_grads": per_task, "unrolled": unroll}
  cfg_args = (batch, dev_batch, width, stage_sizes, dtype, interval)
  cfg = lambda m, lower=maoal_lower: _config(m, *cfg_args, per_task, lower, unroll,
                                             num_tasks)
  phases: dict[str, tuple[dict, list]] = {}

  def put(name, info, times):
    phases[name] = (info, times)
    med = statistics.median(times) if times else None
    print(f"# {name}: {info} median_ms={med}", file=sys.stderr, flush=True)
  n_upper = max(1, repeats // 4)

  for method in methods:
    if method == "taskgen":
      # The same T·B images per step, as one task plus AuxiLearn's sub-class task.
      one = random_data(1, per_task=4 * batch * num_tasks, dev=2 * dev_batch,
                        size=image_size)
      exp = build_experiment(cfg(method), with_subclass_task(one, 5))
    else:
      exp = build_experiment(cfg(method), data)
    state = exp.init()
    info, times, (state, _) = measure(exp.lower_step, state, repeats)
    put(method, info, times)
    if exp.upper_step is not None and upper:
      info, times, (state, _) = measure(exp.upper_step, state, n_upper)
      put(f"{method}_upper", info, times)
    if method == "maoal" and iteration:
      def one_iteration(s, exp=exp):
        for _ in range(interval):
          s, _ = exp.lower_step(s)
        return exp.upper_step(s)
      info, times, _ = measure(one_iteration, state, max(1, repeats // 10))
      info["flops"] = info["flops"] and info["flops"] / interval
      put("maoal_iteration", info, [t / interval for t in times])
    if method == "maoal" and reference:
      ref = build_experiment(cfg(method, "per_module"), data)
      s = ref.init()
      put("maoal_lower_per_module", *measure(ref.lower_step, s, repeats)[:2])
    if method == "equal" and compare_ways:
      for way in PER_TASK_GRADS[1:]:
        fn = lambda s, way=way, exp=exp: per_task_grads(
            exp.losses_at(s, s.step), s.params, way)
        put(f"per_task_grads_{way}", *measure(fn, state, repeats, carry=False)[:2])

  equal_flops = phases["equal"][0]["flops"] if "equal" in phases else None
  equal_ms = (statistics.median(phases["equal"][1])
              if "equal" in phases and phases["equal"][1] else None)
  records = []
  for name, (info, times) in phases.items():
    med = statistics.median(times) if times else None
    rec = {**base, "phase": name, **info,
           "flops_to_equal": (round(info["flops"] / equal_flops, 3)
                              if info["flops"] and equal_flops else None),
           "median_ms": med and round(med, 3), "min_ms": times and round(min(times), 3),
           "time_to_equal": (round(med / equal_ms, 3) if med and equal_ms else None),
           "repeats": len(times), "peak_bytes": _peak_bytes()}
    records.append(rec)
    print_fn(json.dumps(rec))
  return records


def table(records: Sequence[dict]) -> str:
  """A Markdown table of the structure: phase, FLOPs ÷ Equal, grouped convolutions,
  median ms."""
  lines = ["| phase | FLOPs ÷ Equal | grouped convolutions | median ms |",
           "|---|---|---|---|"]
  for r in records:
    lines.append(f"| {r['phase']} | {r['flops_to_equal']} | {r['grouped_convs']} | "
                 f"{r['median_ms']} |")
  return "\n".join(lines)


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  methods = METHODS if f.methods == ["all"] else f.methods
  records = run(methods, f.batch, f.dev_batch, f.width,
                [int(s) for s in f.stage_sizes], f.tasks, f.dtype, f.repeats, f.interval,
                f.per_task_grads, f.maoal_lower, f.compare_ways, f.iteration,
                unroll=f.unroll, upper=f.upper, reference=f.reference)
  print(table(records))
  if f.out:
    os.makedirs(os.path.dirname(f.out) or ".", exist_ok=True)
    with open(f.out, "w") as fh:
      json.dump(records, fh, indent=2)


def _define_flags():
  from absl import flags
  flags.DEFINE_list("methods", ["all"], "Methods whose steps to measure ('all': "
                    f"{', '.join(METHODS)}); equal is always measured.")
  flags.DEFINE_integer("batch", 8, "Images per task per step.")
  flags.DEFINE_integer("dev_batch", 20, "Dev images per upper step.")
  flags.DEFINE_integer("width", 16, "ResNet-18 width (64 in the paper).")
  flags.DEFINE_list("stage_sizes", ["1", "1", "1", "1"], "BasicBlocks per stage.")
  flags.DEFINE_integer("tasks", 11, "Tasks, the main one included.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
  flags.DEFINE_integer("repeats", 10, "Timed calls per lower step (a quarter of it "
                       "for upper steps, a tenth for MAOAL's iteration).")
  flags.DEFINE_integer("interval", 10, "Lower steps per upper step.")
  flags.DEFINE_enum("per_task_grads", "auto", list(PER_TASK_GRADS),
                    "How the methods take per-task gradients.")
  flags.DEFINE_enum("maoal_lower", "one_pass", ["one_pass", "per_module"],
                    "MAOAL's lower step.")
  flags.DEFINE_bool("compare_ways", True, "Also measure each per-task-gradient way.")
  flags.DEFINE_bool("reference", True, "Also measure MAOAL's M-pass lower step.")
  flags.DEFINE_bool("upper", True, "Also measure the upper steps.")
  flags.DEFINE_bool("iteration", True, "Also measure MAOAL's iteration.")
  flags.DEFINE_bool("unroll", True, "Unroll the Neumann series and the loops over "
                    "tasks, so that the FLOPs count every iteration.")
  flags.DEFINE_string("out", None, "Also write the records to this JSON file.")


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
