"""Data parallelism on 8 fake CPU devices (tests/conftest.py): every method's lower step
(and upper step, for learnable methods) on the 8-device mesh against the 1-device step,
the shardings of the state and of the batch, and the device-count / launcher checks.

Compile time dominates: each mesh compiles one program holding every method's steps.
"""


import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from aux_jax.data import get_dataset
from aux_jax.methods import METHODS as ALL_METHODS
from aux_jax import sharding
from aux_jax.train.experiment import build_experiment
from aux_jax.train.loop import load_metrics, train_and_evaluate
from configs import maoal_digits, slgrad_toy
from experiments import train as launcher

N = 8  # fake CPU devices
# Every method on the digits tasks (taskgen needs a single-task dataset with a
# generated task: its steps are the train runner's, checked in tests/train/test_preemption).
# fixed is equal's code with given weights (fixed.fixed_weights): not run again.
METHODS = [m for m in ALL_METHODS if m not in ("taskgen", "fixed")]


def _digits():
  # main, aux_digit, aux_parity, each its own head: fewer tasks, smaller programs
  return get_dataset("digits", n_aux_digit=32, n_aux_parity=32, n_aux_ge5=32,
                     n_aux_random=32, tasks=("aux_digit", "aux_parity"),
                     share_main_head=False)


def _digits_config(method, num_devices):
  c = maoal_digits.get_config(method)
  c.model.kwargs = {"width": 4, "features": 8}
  c.data.batch_size = 16         # per task: 2 per device
  c.data.dev_batch_size = 24     # 3 per device
  c.data.eval_batch_size = 100   # rounded up to 104 on 8 devices
  c.hyper.solver_kwargs.neumann.steps = 1
  c.hyper.on_diverged = "apply"  # every upper step moves φ on this tiny model
  c.mesh = {"num_devices": num_devices}
  return c


def _toy_config(num_devices):
  c = slgrad_toy.get_config("slgrad")  # per-sample weights: the batch axis matters
  c.model.kwargs = {"hidden": (8, 8)}
  c.data.kwargs.update(num_samples=200, input_dim=16)
  c.mesh = {"num_devices": num_devices}
  return c


def _steps(exp, state):
  state, _ = exp.lower_step(state)
  if exp.method.learnable:
    state, _ = exp.upper_step(state)
  return state


def _run(experiments):
  """Every experiment's init and lower (and upper) step: few, larger programs."""
  mesh = next(iter(experiments.values())).mesh
  states = sharding.wait_on_cpu(
      jax.jit(lambda: {k: e.init() for k, e in experiments.items()})(), mesh)
  learnable = [k for k, e in experiments.items() if e.method.learnable]
  new = {}
  for group in (learnable, [k for k in experiments if k not in learnable]):
    if group:
      new.update(jax.jit(lambda ss: {k: _steps(experiments[k], ss[k]) for k in ss},
                         out_shardings=sharding.replicated(mesh))(
                             {k: states[k] for k in group}))
      sharding.wait_on_cpu(new, mesh)  # one multi-device program at a time on CPU
  return states, new


@pytest.fixture(scope="module")
def digits():
  data = _digits()
  exps = {n: {m: build_experiment(_digits_config(m, n), data) for m in METHODS}
          for n in (N, 1)}
  return exps, {n: _run(exps[n]) for n in (N, 1)}


@pytest.fixture(scope="module")
def toy():
  data = get_dataset("toy_regression", **dict(_toy_config(1).data.kwargs))
  exps = {n: build_experiment(_toy_config(n), data) for n in (N, 1)}
  return exps, {n: _run({"slgrad": exps[n]}) for n in (N, 1)}


def _float_leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)
          if jax.dtypes.issubdtype(x.dtype, np.floating)]


def _assert_states_close(a, b, what):
  for name in ("params", "batch_stats", "opt_state", "method", "meta_state"):
    la, lb = _float_leaves(getattr(a, name)), _float_leaves(getattr(b, name))
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
      np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6, err_msg=f"{what}: {name}")
  assert int(a.step) == int(b.step) == 1


@pytest.mark.parametrize("method", METHODS)
def test_step_on_8_devices_matches_1_device(digits, method):
  exps, runs = digits
  (_, new8), (init1, new1) = runs[N], runs[1]
  assert exps[N][method].mesh.size == N and exps[1][method].mesh.size == 1
  _assert_states_close(new8[method], new1[method], method)
  # The step did something: the comparison is not between two initial states.
  before, after = _float_leaves(init1[method].params), _float_leaves(new1[method].params)
  assert any(not np.allclose(x, y) for x, y in zip(before, after))
  if exps[1][method].method.learnable:  # the upper step moved φ
    assert any(not np.allclose(x, y) for x, y in
               zip(_float_leaves(init1[method].method.phi),
                   _float_leaves(new1[method].method.phi)))


def test_batch_norm_statistics_are_over_the_global_batch(digits):
  """Running statistics after one step: per-device statistics would differ."""
  _, runs = digits
  s8, s1, s0 = runs[N][1]["stl"], runs[1][1]["stl"], runs[1][0]["stl"]
  assert _float_leaves(s1.batch_stats)
  for a, b, before in zip(_float_leaves(s8.batch_stats), _float_leaves(s1.batch_stats),
                          _float_leaves(s0.batch_stats)):
    assert not np.allclose(b, before)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_shared_input_step_on_8_devices_matches_1_device(toy):
  _, runs = toy
  _assert_states_close(runs[N][1]["slgrad"], runs[1][1]["slgrad"], "toy slgrad")


def test_state_is_replicated_on_every_device(digits, toy):
  _, runs = digits
  for state in (runs[N][0]["maoal"], runs[N][1]["maoal"], toy[1][N][1]["slgrad"]):
    for leaf in jax.tree.leaves(state):
      assert leaf.sharding.is_fully_replicated
      assert len(leaf.sharding.device_set) == N


@pytest.mark.parametrize("case", ["separate_tasks", "shared_input"])
def test_training_batch_is_split_over_the_data_axis(digits, toy, case):
  exp = digits[0][N]["stl"] if case == "separate_tasks" else toy[0][N]
  state = exp.init()
  losses = jax.jit(lambda s: exp.losses_at(s, s.step).per_sample(s.params)[0])(state)
  t, b = exp.problem.num_tasks, exp.config.data.batch_size
  assert losses.shape == (t, b)
  # The per-sample losses stay where their examples were: B / 8 on each device.
  assert losses.sharding.spec == P(None, sharding.DATA_AXIS)
  assert {s.data.shape for s in losses.addressable_shards} == {(t, b // N)}


def test_evaluation_on_8_devices_matches_1_device(digits):
  exps, runs = digits
  m8 = exps[N]["stl"].evaluate(exps[N]["stl"].model(runs[N][1]["stl"]), "test")
  m1 = exps[1]["stl"].evaluate(exps[1]["stl"].model(runs[1][1]["stl"]), "test")
  assert m8 == pytest.approx(m1, rel=1e-5)


def test_data_parallel_size():
  def size(n, batch, count=8, processes=1, platform="gpu"):
    return sharding.data_parallel_size(n, batch, count, processes, platform)

  assert size(None, 32) == 8 and size(4, 32) == 4 and size(1, 7) == 1
  assert size(None, 32, platform="cpu") == 1                 # fake CPU devices: opt in
  assert size(None, 32, processes=2, platform="cpu") == 8    # multi-process: all
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
    size(None, 12)
  with pytest.raises(ValueError, match="there are 8 devices"):
    size(16, 32)
  with pytest.raises(ValueError, match="uses all 8 devices"):
    size(4, 32, processes=2)


def test_explicit_device_count_must_divide_the_batch():
  c = _digits_config("stl", N)
  c.data.batch_size = 12
  with pytest.raises(ValueError, match="data.batch_size=12 is not divisible by the 8"):
    build_experiment(c, _digits())


def test_training_loop_on_8_devices_resumes_to_the_same_result(digits, tmp_path):
  """Evaluation, orbax checkpoints of the replicated state, and resuming, on 8 devices."""
  exp = digits[0][N]["stl"]

  def config(steps):
    c = ml_collections.ConfigDict(exp.config.to_dict())
    c.optim.num_steps = steps
    c.train.update(log_every=10, eval_every=10, checkpoint_every=10)
    return c

  full = train_and_evaluate(config(30), str(tmp_path / "full"), experiment=exp,
                            progress=lambda _: None)
  train_and_evaluate(config(20), str(tmp_path / "part"), experiment=exp,
                     progress=lambda _: None)
  lines = []
  resumed = train_and_evaluate(config(30), str(tmp_path / "part"), experiment=exp,
                               progress=lines.append)
  assert lines[0] == "resumed from step 20"
  for key in ("test_accuracy", "test_loss", "best_step", f"best_dev_{full['select']}"):
    assert resumed[key] == full[key], key
  assert load_metrics(str(tmp_path / "part")) == load_metrics(str(tmp_path / "full"))


def test_default_mesh_on_cpu_is_one_device():
  c = _digits_config("stl", None)
  del c.mesh
  assert build_experiment(c, _digits()).mesh.size == 1


def test_put_replicated_and_make_mesh():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == (sharding.DATA_AXIS,) and mesh.size == jax.device_count()
  assert sharding.make_mesh(1).devices.tolist() == [jax.devices()[0]]
  host = np.arange(12, dtype=np.int64).reshape(3, 4)
  x = sharding.put_replicated({"a": host}, mesh)["a"]
  assert x.dtype == np.int32 and x.sharding.is_fully_replicated
  assert all(np.array_equal(s.data, host) for s in x.addressable_shards)
  kept = sharding.replicate({"a": x, "b": jax.numpy.float32(2.0)}, mesh)
  assert kept["a"] is x  # already replicated: not copied
  assert kept["b"].sharding.is_fully_replicated and len(kept["b"].sharding.device_set) == N
  with pytest.raises(ValueError, match="there are"):
    sharding.make_mesh(jax.device_count() + 1)
  with pytest.raises(ValueError, match="cannot split"):
    sharding.shard_batch(np.zeros((3, 4)), mesh)


def test_launcher_detects_clusters():
  settings = launcher.distributed_settings
  assert settings({}) is None                                          # one machine
  assert settings({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1"}) is None  # one task
  assert settings({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_NODELIST": "n[1-2]",
                   "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}) == {}
  slurm = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_NODELIST": "n[1-2]",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NUM_NODES": "2"}
  assert settings(slurm) == {"local_device_ids": [0, 1, 2, 3]}  # one task per node
  assert settings({**slurm, "SLURM_STEP_NUM_NODES": "1"}) == {}  # one task per GPU
  assert settings({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:4"}) == {}
  explicit = settings({}, coordinator_address="10.0.0.1:1234", num_processes=2,
                      process_id=1)
  assert explicit == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                      "process_id": 1}
  assert settings({}, mode="on") == {}
  assert settings(slurm, mode="off") is None
  with pytest.raises(ValueError, match="--num_processes"):
    settings({}, coordinator_address="10.0.0.1:1234")
