"""Per-axis objective weights: NumPy brute force, the recorded history, and the plot."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aux_jax.aang import train as T
from aux_jax.aang import weights as W
from aux_jax.aang.experiment import run_aang_experiment
from aux_jax.aang.plots import axis_weights_plot
from aux_jax.aang.space import AXES, get_space

TINY = dict(max_len=40, width=16, depth=1, num_heads=2, mlp_dim=32, dropout=0.0,
            batch_size=8, dev_batch_size=8, learning_rate=3e-3, warmup_steps=2,
            eval_every=3, num_steps=12, patience=10)


def brute_force(lg, factors, use_all=True):
  """Marginals and factor softmaxes by loops over objectives, in NumPy float64."""
  ws = [np.asarray(w, np.float64) for w in lg]
  z = np.array([sum(ws[a][f[a]] for a in range(4)) + (ws[4][c] if use_all else 0.0)
                for c, f in enumerate(factors)])
  p = np.exp(z - z.max())
  p /= p.sum()
  marg = [np.zeros(len(ws[a])) for a in range(4)]
  for c, f in enumerate(factors):
    for a in range(4):
      marg[a][f[a]] += p[c]
  soft = [np.exp(w - w.max()) / np.exp(w - w.max()).sum() for w in ws[:4]]
  return marg, soft


@pytest.mark.parametrize("use_all", [True, False])
def test_axis_weights_match_brute_force(use_all):
  rng = np.random.default_rng(0)
  space = get_space("citation.all")
  factors = space.table().factors
  lg = W.FactoredLogits(*(jnp.asarray(rng.normal(size=n), jnp.float32)
                          for n in (*space.shape, len(space))))
  marg, soft = W.axis_weights(lg, jnp.asarray(factors), use_all)
  want_marg, want_soft = brute_force(lg, factors, use_all)
  for got, want in zip(marg + soft, want_marg + want_soft):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sum(got), 1.0, rtol=1e-5)


def test_zero_logits_give_valid_counts():
  space = get_space("citation.supervised")
  factors = space.table().factors
  marg, soft = W.axis_weights(W.init_logits(space.shape, len(space)), jnp.asarray(factors))
  # With all logits 0, p is uniform over the 24 valid objectives, so a value's marginal is
  # its share of them: 16 denoise / 8 supervised; 6 per transform; 8 bidirectional and 8
  # random-factorised (4 denoise + 4 supervised each), 4 each for L2R and R2L.
  counts = [np.bincount(factors[:, a], minlength=n) / len(factors)
            for a, n in enumerate(space.shape)]
  for got, want in zip(marg, counts):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert marg[3][space.outputs.index("denoise")] == pytest.approx(16 / 24)
  rep = dict(zip(space.representations, np.asarray(marg[2]) * 24))
  assert rep == pytest.approx({"bidirectional": 8, "left_to_right": 4, "right_to_left": 4,
                               "random_factorized": 8})
  for s in soft:
    np.testing.assert_allclose(s, np.full(s.shape, 1 / s.shape[0]), rtol=1e-6)


def _write_jsonl(root):
  rng = np.random.default_rng(0)
  words = ["the", "model", "we", "data", "show", "results", "method", "paper"]
  for split, n in (("train", 48), ("dev", 16), ("test", 16)):
    with open(root / f"{split}.jsonl", "w") as f:
      for _ in range(n):
        label = ["Uses", "Background"][int(rng.integers(2))]
        text = " ".join(list(rng.choice(words, 4)) + ["zebra" if label == "Uses" else "maple"])
        f.write(json.dumps({"text": text, "label": label}) + "\n")


def _random_walk_step(model, config, space, spec):
  """Stands in for `train.make_aang_step` (whose compile takes ~15 s on this CPU; the
  real step's records are checked in test_train): logits and balance take a random walk,
  the model is unchanged."""
  del model, config, space, spec

  def step(state, data):
    del data
    key, k = jax.random.split(state.key)
    ks = jax.random.split(k, len(state.logits) + 1)
    logits = W.FactoredLogits(*(w + jax.random.normal(kk, w.shape)
                                for kk, w in zip(ks, state.logits)))
    return state._replace(step=state.step + 1, logits=logits, key=key,
                          beta=state.beta + 0.3 * jax.random.normal(ks[-1], (2,))), {
                              "loss_primary": jnp.zeros(()), "loss_aux": jnp.zeros(())}

  return step


def test_aang_run_records_axis_weights_and_writes_plot(tmp_path, monkeypatch):
  monkeypatch.setattr(T, "make_aang_step", _random_walk_step)
  data = tmp_path / "data"
  data.mkdir()
  _write_jsonl(data)
  config = ml_collections.ConfigDict(dict(seed=0, data_dir=str(data),
                                          aang=dict(TINY, method="aang")))
  run_aang_experiment(config, str(tmp_path / "wd"), log_fn=None)
  png = tmp_path / "wd" / "aang_weights.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
  with open(tmp_path / "wd" / "results.json") as f:
    res = json.load(f)
  hist, names = res["axis_weights_history"], res["axis_names"]
  space = get_space("citation.supervised")
  assert names == {a: list(v) for a, v in zip(AXES, space.axes)}
  # Step 0 (initial logits) then one record per dev evaluation.
  assert [r["step"] for r in hist] == [0] + [s for s, _ in res["dev_f1_history"]]
  factors = space.table().factors
  for rec, lg in zip(hist[1:], res["logits_history"]):
    logits = W.FactoredLogits(*(np.asarray(lg[f], np.float32)
                                for f in W.FactoredLogits._fields))
    want_marg, want_soft = brute_force(logits, factors)
    for a, axis in enumerate(AXES):
      assert len(rec["marginal"][axis]) == len(names[axis])
      np.testing.assert_allclose(sum(rec["marginal"][axis]), 1.0, rtol=1e-5)
      np.testing.assert_allclose(sum(rec["factor_softmax"][axis]), 1.0, rtol=1e-5)
      np.testing.assert_allclose(rec["marginal"][axis], want_marg[a], rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(rec["factor_softmax"][axis], want_soft[a], rtol=1e-4,
                                 atol=1e-6)
    np.testing.assert_allclose(sum(rec["balance"]), 1.0, rtol=1e-5)
  # Step 0 is the uniform start; the random walk then moved the weights.
  t0, t_end = (np.array(r["factor_softmax"]["transform"]) for r in (hist[0], hist[-1]))
  np.testing.assert_allclose(t0, 0.25, rtol=1e-6)
  assert np.abs(t_end - t0).max() > 1e-2
  np.testing.assert_allclose(hist[0]["balance"], [0.5, 0.5], rtol=1e-6)
  assert abs(hist[-1]["balance"][0] - 0.5) > 1e-3


def test_baseline_run_writes_no_plot(tmp_path, monkeypatch):
  monkeypatch.setattr(T, "make_fixed_step",
                      lambda *a, **k: _random_walk_step(None, None, None, None))
  data = tmp_path / "data"
  data.mkdir()
  _write_jsonl(data)
  config = ml_collections.ConfigDict(dict(seed=0, data_dir=str(data), aang=dict(
      TINY, method="supervised", num_steps=6)))
  run_aang_experiment(config, str(tmp_path / "wd"), log_fn=None)
  assert not (tmp_path / "wd" / "aang_weights.png").exists()
  with open(tmp_path / "wd" / "results.json") as f:
    assert json.load(f)["axis_weights_history"] == []


def test_plot_errors(tmp_path):
  names = {a: ["x"] for a in AXES}
  rec = {"step": 0, "marginal": {a: [1.0] for a in AXES}}
  with pytest.raises(ValueError, match="no recorded axis weights"):
    axis_weights_plot([], names, str(tmp_path / "a.png"))
  with pytest.raises(ValueError, match="kind must be"):
    axis_weights_plot([rec], names, str(tmp_path / "a.png"), kind="logits")
  with pytest.raises(ValueError, match="missing"):
    axis_weights_plot([rec], names, str(tmp_path / "a.png"), kind="factor_softmax")
  with pytest.raises(ValueError, match="2 names"):
    axis_weights_plot([rec], dict(names, output=["a", "b"]), str(tmp_path / "a.png"))
  with pytest.raises(ValueError, match="data_dir"):
    run_aang_experiment(ml_collections.ConfigDict(dict(seed=0, data_dir="", aang={})),
                        str(tmp_path / "wd"))
