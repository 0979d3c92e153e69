"""ATTITTUD's comparison: every variant over several seeds, a table of mean ± 95% CI.

    python -m experiments.attittud_compare [--config=configs/attittud_cifar10.py] \
        [--variants=primary_only,pretrain_finetune,multitask,attittud_100,attittud_11m1] \
        [--seeds=5] [--workdir=workdirs/attittud] [--steps=N] \
        [--override=data.kwargs.primary_dir=/data/chexpert_folders ...]

The config file's ``get_config(variant)`` builds each variant's two-phase config
(`aux_jax.train.two_phase`); seed s sets ``config.seed = s`` (the configs' data
seed follows it, so each seed also draws its own few-shot subset). ``--override``
sets a dotted config field (value parsed as a Python literal, else kept as a
string); ``--steps`` shortens both phases (smoke runs). Each run's workdir is
``<workdir>/<variant>/seed<s>`` (rerunning resumes). Prints, and writes to
``<workdir>/attittud_table.md``, a Markdown table of the final phase's main-task test
accuracy: mean ± the 95% confidence half-width of the mean, t-distribution
(t_{0.975, n−1} · s / √n, s the sample standard deviation); every run's summary goes
to ``<workdir>/attittud_runs.json``.
"""

import json
import os
import time

from absl import app, flags, logging

from aux_jax.train.two_phase import run_two_phase
from experiments.report import apply_override, ci_table, load_config_module

_CONFIG = flags.DEFINE_string("config", "configs/attittud_cifar10.py",
                              "Config file with get_config(variant) and VARIANTS.")
_VARIANTS = flags.DEFINE_list("variants", None, "Variants to run (default: the "
                              "config module's VARIANTS).")
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds per variant (0 .. seeds-1).")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/attittud", "Output directory.")
_STEPS = flags.DEFINE_integer("steps", None, "Override both phases' optim.num_steps.")
_OVERRIDE = flags.DEFINE_multi_string("override", [], "dotted.field=value, repeatable.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  module = load_config_module(_CONFIG.value)
  variants = _VARIANTS.value or list(module.VARIANTS)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  runs = []
  for variant in variants:
    for seed in range(_SEEDS.value):
      config = module.get_config(variant)
      config.seed = seed
      for assignment in _OVERRIDE.value:
        apply_override(config, assignment)
      if _STEPS.value:
        config.optim.num_steps = _STEPS.value
        if "finetune" in config and "optim" in config.finetune:
          config.finetune.optim.num_steps = _STEPS.value
      workdir = os.path.join(_WORKDIR.value, variant, f"seed{seed}")
      print(f"== {variant}, seed {seed} -> {workdir}", flush=True)
      start = time.time()
      result = run_two_phase(config, workdir, progress=lambda _: None)
      result["variant"], result["seed"] = variant, seed
      result["wall_seconds"] = time.time() - start
      runs.append(result)
      print(f"   test accuracy {result['test_accuracy']:.4f} "
            f"({result['final_phase']})", flush=True)
  table = ci_table(runs)
  with open(os.path.join(_WORKDIR.value, "attittud_runs.json"), "w") as f:
    json.dump(runs, f, indent=2)
  with open(os.path.join(_WORKDIR.value, "attittud_table.md"), "w") as f:
    f.write(table + "\n")
  print(table)


if __name__ == "__main__":
  app.run(main)
