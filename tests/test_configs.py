"""Every experiment config: its VARIANTS build, it shares sections only through
configs/common.py, and it validates against the registries it names."""

import ast
import glob
import os

import pytest

from aux_jax import methods
from aux_jax.train import runner
from experiments.report import load_config_module

CONFIGS = sorted(p for p in glob.glob(os.path.join(
    os.path.dirname(__file__), "..", "configs", "*.py"))
    if os.path.basename(p) not in ("common.py", "__init__.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_variants_build_and_only_common_is_imported(path):
  with open(path) as f:
    tree = ast.parse(f.read())
  imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
              and n.module == "configs" for a in n.names}
  imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and (n.module or "").startswith("configs.")}
  assert imported <= {"common"}, imported
  module = load_config_module(path)
  assert module.VARIANTS, "the compare launcher's default rows"
  for variant in module.VARIANTS:
    c = module.get_config(variant)
    assert c.runner in runner.RUNNERS
    if c.runner == "train":
      assert c.method.name in methods.METHODS
  try:  # a named-variant config rejects an unknown one; a method-named config defers
    c = module.get_config("no_such_variant")  # to the method registry (launcher tests)
  except ValueError:
    return
  assert c.method.name == "no_such_variant"


@pytest.mark.parametrize("name", ["slgrad_toy", "slgrad_cifar10", "slgrad_multimnist"])
def test_slgrad_configs_run_slgrads_gcs(name):
  """GCS as SLGrad's code (per-tensor cosines, unit-norm tensors); other methods keep
  their own kwargs."""
  module = load_config_module(os.path.join(os.path.dirname(__file__), "..", "configs",
                                           f"{name}.py"))
  kw = module.get_config("gcs").method.kwargs
  assert (kw.per_layer, kw.unit_layers) == (True, True)
  assert "per_layer" not in module.get_config("unif").method.kwargs


def test_maoal_estimator_variants_set_what_they_name():
  """maoal_<estimator> changes only the upper level (and keeps method maoal); the
  digits oracle ``equal_helpful`` is equal without aux_random."""
  from configs import common
  module = load_config_module(os.path.join(os.path.dirname(__file__), "..", "configs",
                                           "maoal_digits.py"))
  base = module.get_config("maoal").to_dict()
  for name in common.MAOAL_ESTIMATORS:
    c = module.get_config(f"maoal_{name}")
    assert c.method.name == "maoal"
    changed = {k for k in base if c.to_dict()[k] != base[k]}
    assert changed <= {"hyper"}, (name, changed)
  neumann = lambda v: module.get_config(v).hyper.solver_kwargs.neumann
  assert (neumann("maoal_original").step, neumann("maoal_original").scale_by_step) == (1.0, False)
  assert module.get_config("maoal_original").hyper.on_diverged == "apply"
  assert neumann("maoal_auto").auto_step and not neumann("maoal").auto_step
  assert (neumann("maoal_ridge").ridge, neumann("maoal_ridge").steps) == (1.0, 10)
  with pytest.raises(ValueError, match="unknown MAOAL estimator"):
    module.get_config("maoal_bogus")
  oracle = module.get_config("equal_helpful")
  assert oracle.method.name == "equal" and "aux_random" not in oracle.data.kwargs.tasks
  assert module.get_config("equal").data.kwargs.tasks is None
  fixed = module.get_config("fixed")  # given weights, overridable from the command line
  assert fixed.method.name == "fixed" and len(fixed.method.kwargs.weights) == 4
