"""The AANG step's meta-update wiring, and tiny end-to-end runs on a keyword task."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aux_jax.aang import train as T
from aux_jax.aang import weights as W
from aux_jax.aang.data import keyword_data
from aux_jax.aang.space import get_space
from aux_jax.aang.tokenizer import ByteTokenizer
from aux_jax.aang.transformer import AangModel, EncoderConfig

TINY = dict(max_len=48, width=32, depth=1, num_heads=2, mlp_dim=64, dropout=0.0,
            batch_size=16, dev_batch_size=16, learning_rate=3e-3, warmup_steps=5,
            num_sampled=3, eval_every=20, num_steps=60, patience=10, meta_lr=0.5)


def keyword_task():
  return keyword_data(0, num_classes=3, n_train=96, n_dev=48, n_test=48, length=5)


def test_aang_run_learns_keywords_and_meta_learns_logits():
  config = ml_collections.ConfigDict(dict(TINY, method="aang"))
  lines = []
  out = T.run_aang(config, keyword_task(), seed=0, log_fn=lines.append)
  # Chance macro-F1 on 3 balanced classes is ~1/3.
  assert out["best_dev_f1"] > 0.8, out["dev_f1_history"]
  assert out["test_f1"] > 0.6
  assert len(lines) == len(out["dev_f1_history"]) and "dev_macro_f1" in lines[0]
  assert len(out["objective_names"]) == 24
  z = np.array(out["logits_history"][-1]["objective_logits"])
  assert z.shape == (24,) and np.abs(z).max() > 0      # meta-updates moved the logits
  np.testing.assert_allclose(sum(out["final_objective_weights"]), 1.0, rtol=1e-5)
  # Per-axis weights: step 0 then each evaluation; each axis a distribution.
  axes = out["axis_weights_history"]
  assert [r["step"] for r in axes] == [0] + [s for s, _ in out["dev_f1_history"]]
  for kind in ("marginal", "factor_softmax"):
    for values in axes[-1][kind].values():
      np.testing.assert_allclose(sum(values), 1.0, rtol=1e-5)
  assert axes[-1]["marginal"]["output"] != axes[0]["marginal"]["output"]
  assert out["best_step"] in [s for s, _ in out["dev_f1_history"]]


def test_meta_update_in_step_matches_direct_computation():
  cfg = T.AangConfig(**dict(TINY, meta_every=1, num_sampled=4))
  tok = ByteTokenizer()
  spec = T.token_spec(tok)
  space = get_space("citation.supervised")
  model = AangModel(EncoderConfig(tok.vocab_size, cfg.max_len, cfg.width, cfg.depth,
                                  cfg.num_heads, cfg.mlp_dim, cfg.dropout), 3)
  data = keyword_task()
  enc = lambda t: jnp.asarray(tok.encode_batch(list(t), cfg.max_len))
  dd = T.DeviceData(enc(data.train.texts), jnp.asarray(data.train.labels),
                    enc(data.train.texts), enc(data.dev.texts), jnp.asarray(data.dev.labels))
  state = T.init_state(model, cfg, space, jax.random.PRNGKey(0))
  state = state._replace(logits=W.FactoredLogits(
      *(jnp.asarray(np.random.default_rng(0).normal(size=x.shape), jnp.float32)
        for x in state.logits)))
  new, m = jax.jit(T.make_aang_step(model, cfg, space, spec))(state, dd)
  factors = space.table().factors
  sampled, cos = np.asarray(m["sampled"]), np.asarray(m["cosines"])
  assert bool(m["did_meta"]) and len(set(sampled)) == 4
  assert np.all(np.abs(cos) <= 1 + 1e-5) and np.abs(cos).max() > 0
  want = [np.array(w) for w in state.logits]
  for c, cs in zip(sampled, cos):
    for a in range(4):
      want[a][factors[c, a]] += cfg.meta_lr * cs
    want[4][c] += cfg.meta_lr * cs
  for got, w in zip(new.logits, want):
    np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5, atol=1e-6)
  # Weights used in the step: lambda * softmax over the sampled logits (old logits).
  z = sum(np.asarray(w)[factors[:, a]] for a, w in enumerate(state.logits[:4]))
  zs = (z + np.asarray(state.logits.w_all))[sampled]
  np.testing.assert_allclose(m["aux_weights"], np.exp(zs) / np.exp(zs).sum(), rtol=1e-5)
  # Balance: beta <- beta + meta_lr * (cos_prim, cos_aux).
  np.testing.assert_allclose(
      new.beta, cfg.meta_lr * np.array([m["cos_primary"], m["cos_aux"]]), rtol=1e-5)


def test_supervised_baseline_learns():
  out = T.run_aang(dict(TINY, method="supervised"), keyword_task(), seed=1)
  assert out["best_dev_f1"] > 0.8, out["dev_f1_history"]
  assert out["logits_history"] == []


def test_config_errors():
  with pytest.raises(ValueError, match="Unknown AangConfig field"):
    T.AangConfig.from_mapping({"methd": "aang"})
  with pytest.raises(ValueError, match="method must be one of"):
    T.AangConfig(method="maml")
  with pytest.raises(ValueError, match="in-domain"):
    T.run_aang(dict(TINY, space="citation.all"),
               dataclasses.replace(keyword_task(), in_domain=None))
