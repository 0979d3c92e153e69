"""Per-axis objective weights: NumPy brute force, the recorded history, and the plot."""

import jax.numpy as jnp
import numpy as np
import pytest

from aux_jax.aang import weights as W
from aux_jax.aang.experiment import axis_history
from aux_jax.aang.plots import axis_weights_plot
from aux_jax.aang.space import AXES, get_space

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


def test_axis_history_of_logged_logits_and_plot(tmp_path):
  """The records the AANG experiment logs (its logits and balance) become per-axis
  weights (after a step-0 record of the zero start) and the PNG."""
  space = get_space("citation.supervised")
  factors = space.table().factors
  rng = np.random.default_rng(0)
  records = []
  for step in (5, 10, 15):
    lg = {f: rng.normal(size=n).tolist()
          for f, n in zip(W.FactoredLogits._fields, (*space.shape, len(space)))}
    bal = rng.dirichlet([1, 1]).tolist()
    records.append({"step": step, "loss_primary": 1.0, **lg, "balance": bal})
  records.append({"step": 16, "dev_macro_f1": 0.5})       # a record without logits
  hist = axis_history(records, space, True)
  assert [r["step"] for r in hist] == [0, 5, 10, 15]
  np.testing.assert_allclose(hist[0]["factor_softmax"]["transform"], 0.25, rtol=1e-6)
  assert hist[0]["balance"] == [0.5, 0.5]
  for rec, raw in zip(hist[1:], records):
    logits = W.FactoredLogits(*(np.asarray(raw[f], np.float32)
                                for f in W.FactoredLogits._fields))
    want_marg, want_soft = brute_force(logits, factors)
    for a, axis in enumerate(AXES):
      np.testing.assert_allclose(rec["marginal"][axis], want_marg[a], rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(rec["factor_softmax"][axis], want_soft[a], rtol=1e-4,
                                 atol=1e-6)
    assert rec["balance"] == raw["balance"]
  names = {a: list(v) for a, v in zip(AXES, space.axes)}
  png = axis_weights_plot(hist, names, str(tmp_path / "w.png"))
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


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
