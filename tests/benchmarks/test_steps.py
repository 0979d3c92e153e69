"""CPU smoke run of benchmarks/steps.py with tiny sizes and a few methods: the records'
structure, and the structural claims (timings are not checked)."""

from benchmarks import steps


def test_grouped_convs_counts_group_counts_above_one():
  text = "\n".join([
      "%c = stablehlo.convolution(%a, %b) {batch_group_count = 1 : i64, "
      "feature_group_count = 11 : i64}",
      "%d = stablehlo.convolution(%a, %b) {batch_group_count = 1 : i64, "
      "feature_group_count = 1 : i64}",
      "conv = f32[1]{0} convolution(a, b), batch_group_count=3, feature_group_count=3"])
  assert steps.grouped_convs(text) == 2


def test_steps_benchmark_reports_structure_of_every_phase():
  # Lower steps only, one method: compile time dominates (the upper steps and MAOAL's
  # M-pass reference are tested for equality in tests/methods/test_fast_paths.py).
  lines = []
  records = steps.run(methods=["maoal"], batch=2, dev_batch=2, width=4,
                      stage_sizes=(1, 1, 1, 1), num_tasks=3, repeats=1, interval=2,
                      image_size=8, upper=False, reference=False,
                      print_fn=lines.append)
  by = {r["phase"]: r for r in records}
  assert list(by) == ["equal", "per_task_grads_vmap", "per_task_grads_map",
                      "per_task_grads_vjp", "maoal"]
  assert len(lines) == len(records)
  assert by["equal"]["flops_to_equal"] == 1.0
  for r in records:
    assert r["flops"] > 0 and r["device"] and r["jax"] and r["batch_per_task"] == 2
    assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"]
  # vmap over stacked parameters makes grouped convolutions; the other ways do not.
  assert by["per_task_grads_vmap"]["grouped_convs"] > 0
  assert by["per_task_grads_map"]["grouped_convs"] == 0
  assert by["per_task_grads_vjp"]["grouped_convs"] == 0
  # The unrolled loops count every task: T one-hot backward passes cost more than one
  # pass per task.
  assert by["per_task_grads_vjp"]["flops"] > 1.5 * by["per_task_grads_map"]["flops"]
  # MAOAL's one-pass lower step costs about an Equal step.
  assert by["maoal"]["flops_to_equal"] <= 1.15
  assert by["maoal"]["grouped_convs"] == 0
  assert "|" in steps.table(records)


def test_multitask_weightings_have_no_grouped_convolutions():
  """A gradient rule (per-task gradients, "map") and a loss weighting (one pass) of
  docs/weightings.md: no grouped convolutions; the loss weighting costs an Equal step."""
  records = steps.run(methods=["nash_mtl", "famo"], batch=2, dev_batch=2, width=4,
                      stage_sizes=(1, 1, 1, 1), num_tasks=3, repeats=1, interval=2,
                      image_size=8, upper=False, reference=False, compare_ways=False,
                      print_fn=lambda _: None)
  by = {r["phase"]: r for r in records}
  assert list(by) == ["equal", "nash_mtl", "famo"]
  assert all(r["grouped_convs"] == 0 for r in records)
  assert by["famo"]["flops_to_equal"] <= 1.02
  assert 1.0 < by["nash_mtl"]["flops_to_equal"] <= 1.5
