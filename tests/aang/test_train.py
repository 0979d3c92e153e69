"""AANG's step parts against direct re-derivations: heads, meta averaging, dev head,
optimizer groups; the config's variants and errors. (The whole step runs end to end in
test_preemption.py and tests/models/test_roberta_aang.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aux_jax.aang import objectives as O
from aux_jax.aang import step as S
from aux_jax.aang import weights as W
from aux_jax.aang.experiment import experiment_from_config, hyper_from_config
from aux_jax.aang.model import fresh_net
from aux_jax.aang.space import get_space
from aux_jax.models.hf_tokenizer import HFTokenizer, byte_level_tokenizer
from aux_jax.train import nonfinite
from configs import aang_citation_intent

TOK = HFTokenizer(byte_level_tokenizer())   # the from-scratch tokenizer (<s>=0, <pad>=1, </s>=2)
SPEC = O.token_spec(TOK)
SIZES = dict(width=8, depth=1, num_heads=2, mlp_dim=16, dropout=0.0)
NET = fresh_net(TOK, 16, 3, **SIZES)


def test_every_objective_has_its_own_head_none_shared_with_the_primary():
  space = get_space("citation.supervised")
  params = jax.jit(NET.init, static_argnums=(1, 2))(jax.random.key(0), 16, 8)
  leading = lambda tree: {x.shape[0] for x in jax.tree.leaves(tree)}
  assert leading(params["lm_heads"]) == {16} and leading(params["aux_heads"]) == {8}
  assert set(params["lm_heads"]) == {"head", "decoder"}       # untied, as the original
  # Distinct parameters: no two heads (nor the primary) hold the same values.
  dec = np.asarray(params["lm_heads"]["decoder"]).reshape(16, -1)
  assert len({row.tobytes() for row in dec}) == 16
  k1 = np.asarray(params["aux_heads"]["Dense_0"]["kernel"]).reshape(8, -1)
  prim = np.asarray(params["primary_head"]["Dense_0"]["kernel"]).ravel()
  assert len({row.tobytes() for row in k1} | {prim.tobytes()}) == 9
  del space

  # The gradient of objective c's loss reaches the body and head c only.
  tokens = jnp.asarray(np.tile([0, 10, 11, 12, 13, 14, 15, 16, 17, 2, 1, 1], (8, 1)))
  labels, rows = jnp.zeros((8,), jnp.int32), jnp.ones((8,))

  def loss(p, c, output):
    gather = lambda tree: jax.tree.map(lambda x: x[c], tree)
    return O.objective_loss(NET, p["encoder"], gather(p["lm_heads"]),
                            gather(p["aux_heads"]), jax.random.key(1), tokens, labels, rows,
                            2, 0, output, SPEC, dropout=False)[0]

  grad = jax.jit(jax.grad(loss))
  for output, group in ((O.DENOISE, "lm_heads"), (O.SUPERVISED, "aux_heads")):
    g = grad(params, 5, output)
    assert optax.tree.norm(g["encoder"]) > 0
    assert optax.tree.norm(g["primary_head"]) == 0
    per_head = jax.tree.map(lambda x: jnp.sum(x.reshape(x.shape[0], -1) ** 2, -1),
                            g[group])
    norms = np.asarray(sum(jax.tree.leaves(per_head)))
    assert norms[5] > 0 and np.all(np.delete(norms, 5) == 0)
    other = "aux_heads" if group == "lm_heads" else "lm_heads"
    assert optax.tree.norm(g[other]) == 0


def test_auxiliary_supervised_head_is_a_relu_mlp():
  """The 8 supervised heads apply ReLU (modelling.py:295), as a NumPy MLP computes."""
  params = jax.jit(NET.init, static_argnums=(1, 2))(jax.random.key(0), 16, 8)
  head = jax.tree.map(lambda x: np.asarray(x[3], np.float64), params["aux_heads"])
  tokens = jnp.asarray(np.tile([0, 10, 11, 12, 13, 2, 1, 1], (4, 1)))
  labels, rows = jnp.asarray([0, 1, 2, 1]), jnp.asarray([1.0, 1.0, 0.0, 1.0])
  key = jax.random.key(2)
  loss, n = O.objective_loss(NET, params["encoder"], None, jax.tree.map(jnp.asarray, head),
                             key, tokens, labels, rows, 0, 0, O.SUPERVISED, SPEC,
                             has_denoise=False, dropout=False)
  ob = O.make_objective_batch(jax.random.split(key, 3)[0], tokens, 0, 0, SPEC,
                              output=O.SUPERVISED)
  cls = np.asarray(NET.encode(params["encoder"], ob.tokens, ob.mask)[:, 0], np.float64)
  hidden = np.maximum(cls @ head["Dense_0"]["kernel"] + head["Dense_0"]["bias"], 0.0)
  logits = hidden @ head["Dense_1"]["kernel"] + head["Dense_1"]["bias"]
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -logp[np.arange(4), np.asarray(labels)]
  r = np.asarray(rows)
  np.testing.assert_allclose(loss, (ce * r).sum() / r.sum(), rtol=1e-5)
  assert n == 3
  # tanh would give another value: the test separates the two activations.
  tanh_logits = np.tanh(cls @ head["Dense_0"]["kernel"] + head["Dense_0"]["bias"]) @ \
      head["Dense_1"]["kernel"] + head["Dense_1"]["bias"]
  assert not np.allclose(tanh_logits, logits, rtol=1e-3)


def test_tied_decoders_option():
  net = fresh_net(TOK, 16, 3, tie_lm_decoders=True, **SIZES)
  params = jax.eval_shape(lambda k: net.init(k, 4, 0), jax.random.key(0))
  assert set(params["lm_heads"]) == {"head"} and "aux_heads" not in params


def test_meta_update_averages_three_steps_with_separate_learning_rates():
  space = get_space("citation.supervised")
  factors = jnp.asarray(space.table().factors)
  hyper = S.Hyper(aux_lr=0.1, balance_lr=0.01, meta_every=3)
  logits = W.init_logits(space.shape, len(space))
  zeros = jax.tree.map(jnp.zeros_like, logits)
  state = S.AangState(jnp.int32(0), {}, {}, logits, jnp.zeros(2), zeros, jnp.zeros(2),
                      nonfinite.init())
  rng = np.random.default_rng(0)
  want = [np.zeros(n) for n in (*space.shape, len(space))]
  beta_sum = np.zeros(2)
  for _ in range(3):  # what the step accumulates, scripted
    sampled = rng.choice(len(space), 3, replace=False)
    cos = rng.uniform(-1, 1, 3)
    up = W.logit_gradients(state.logits, factors, jnp.asarray(sampled), jnp.asarray(cos))
    state = state._replace(logit_grads=jax.tree.map(jnp.add, state.logit_grads, up),
                           beta_grad=state.beta_grad + jnp.array([-0.5, -0.25]))
    for c, cs in zip(sampled, cos):
      for a in range(4):
        want[a][space.table().factors[c, a]] += cs   # -(-cos), no softmax Jacobian
      want[4][c] += cs
    beta_sum += [0.5, 0.25]
  assert all(float(jnp.abs(w).max()) == 0 for w in state.logits)   # nothing applied yet
  new, _ = S.make_meta_apply(hyper)(state)
  for got, w in zip(new.logits, want):
    np.testing.assert_allclose(got, 0.1 * w / 3, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(new.beta, 0.01 * beta_sum / 3, rtol=1e-5)
  assert all(float(jnp.abs(g).max()) == 0 for g in new.logit_grads)
  assert float(jnp.abs(new.beta_grad).max()) == 0


def test_dev_head_is_fresh_and_stops_when_the_loss_plateaus():
  enc = NET.init_encoder(jax.random.key(0))
  tokens = jnp.asarray(np.tile([0, 10, 11, 2, 1, 1, 1, 1], (6, 1)))
  labels = jnp.array([0, 1, 2, 0, 1, 2])
  run = jax.jit(lambda key, tol: S.dev_gradient(
      NET, S.Hyper(dev_head_steps=10, dev_head_tol=tol), SPEC, enc, key, tokens, labels,
      tokens, labels))
  g_a, _, iters = run(jax.random.key(1), 0.05)
  g_b, _, _ = run(jax.random.key(2), 0.05)
  # Identical inputs: the texts carry no label signal, so the fit plateaus early.
  assert 1 <= int(iters) < 10
  _, _, iters_all = run(jax.random.key(1), 0.0)
  assert int(iters_all) == 10
  # A fresh head per key (a new initialisation every step): different g_dev.
  assert float(optax.tree.norm(jax.tree.map(jnp.subtract, g_a, g_b))) > 0


def test_optimizer_groups_schedule_and_decay_mask():
  cfg = aang_citation_intent.get_config("aang")
  optim = cfg.optim
  optim.update(lr=1.0, head_lr=0.5, num_steps=100)
  sched = S.warmup_linear_decay(1.0, 100, 0.06, 700)
  np.testing.assert_allclose([sched(0), sched(3), sched(6), sched(53), sched(100)],
                             [0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
  assert S.warmup_linear_decay(1.0, 100_000, 0.06, 700)(700) == pytest.approx(1.0)
  params = {"encoder": {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))},
            "primary_head": {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}}
  # Zero gradients: only the weight decay moves the parameters (lr at step 50 = 0.5x).
  tx = S.make_optimizer(optim, 100)
  state = tx.init(params)
  for _ in range(51):
    upd, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  lr = sched(50)
  assert float(upd["encoder"]["b"][0]) == 0.0                         # no decay on biases
  np.testing.assert_allclose(upd["encoder"]["w"], -lr * 0.01, rtol=1e-5)
  np.testing.assert_allclose(upd["primary_head"]["b"], -0.5 * lr * 0.1, rtol=1e-5)


def test_variants_and_their_settings():
  assert aang_citation_intent.VARIANTS == ("stl", "tapt", "static_mt", "aang")
  for v in aang_citation_intent.VARIANTS:
    c = aang_citation_intent.get_config(v)
    assert c.method.name == v and c.phase_runner == "aang" and c.finetune.enabled
  h = hyper_from_config(aang_citation_intent.get_config("aang"))
  assert (h.aux_lr, h.balance_lr, h.meta_every, h.num_sampled) == (0.1, 0.1, 3, 3)
  h = hyper_from_config(aang_citation_intent.get_config("static_mt"))
  assert (h.aux_lr, h.balance_lr) == (0.0, 0.0)
  assert hyper_from_config(aang_citation_intent.get_config("tapt")).num_sampled == 1
  r = aang_citation_intent.get_config("aang_roberta")
  assert (r.data.batch_size, r.data.aux_batch_size, r.data.max_len) == (128, 256, 512)
  assert (r.optim.lr, r.optim.head_lr, r.optim.eps, r.optim.b2) == (1e-4, 1e-4, 1e-6, 0.98)
  assert (r.optim.num_steps, r.train.eval_every, r.train.patience) == (900, 30, 20)
  assert r.model.classifier_dropout == 0.3
  with pytest.raises(ValueError, match="unknown variant"):
    aang_citation_intent.get_config("supervised")


def test_meta_learning_rate_grid_is_the_originals_partial_big():
  """``partial_big`` (hyper_search_configs.py:4-12): 2 × 2 × 2 × 2 points on RoBERTa;
  a grid point changes its four fields and nothing else."""
  got = set()
  for v in aang_citation_intent.GRID:
    c, base = aang_citation_intent.get_config(v), aang_citation_intent.get_config(
        "aang_roberta")
    h = hyper_from_config(c)
    got.add((h.aux_lr, h.balance_lr, c.optim.head_lr, h.num_sampled))
    for section, field in (("aang", "aux_lr"), ("aang", "balance_lr"),
                           ("optim", "head_lr"), ("aang", "num_sampled")):
      base[section][field] = c[section][field]
    base.variant = v
    assert c.to_dict() == base.to_dict()
  assert got == {(a, b, h, k) for a in (0.1, 1.0) for b in (0.01, 0.1)
                 for h in (1e-4, 1e-3) for k in (3, 6)}
  assert {(hyper_from_config(aang_citation_intent.get_config(v)).aux_lr,
           hyper_from_config(aang_citation_intent.get_config(v)).balance_lr)
          for v in aang_citation_intent.META_GRID} == {(0.1, 0.01), (0.1, 0.1),
                                                       (1.0, 0.01), (1.0, 0.1)}
  with pytest.raises(ValueError, match="unknown grid setting"):
    aang_citation_intent.get_config("aang+lr3")


def test_experiment_errors(tmp_path):
  c = aang_citation_intent.get_config("aang")
  with pytest.raises(ValueError, match="data_dir"):
    experiment_from_config(c)
  c.data_dir = str(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="No data directory"):
    experiment_from_config(c)
  c.method.name = "maml"
  with pytest.raises(ValueError, match="unknown AANG method"):
    experiment_from_config(c)


@pytest.mark.parametrize("finetune_dev,final", [(0.6, "finetune"), (0.5, "pretrain")])
def test_final_fine_tuning_is_kept_only_if_dev_improves(monkeypatch, tmp_path,
                                                        finetune_dev, final):
  from aux_jax.train import loop, two_phase
  c = aang_citation_intent.get_config("aang")
  c.data_dir = "unused"
  seen = []

  def fake_run(cfg, workdir, progress=print):
    seen.append(cfg)
    dev = 0.5 if cfg.method.name == "aang" else finetune_dev
    return {"method": cfg.method.name, "select": "macro_f1", "best_dev_macro_f1": dev,
            "test_macro_f1": dev - 0.1}

  monkeypatch.setattr(loop, "train_and_evaluate", fake_run)
  out = two_phase.run_two_phase(c, str(tmp_path), progress=lambda _: None)
  first, second = seen
  assert first.runner == second.runner == "aang" and second.method.name == "stl"
  assert second.train.init_from.endswith("pretrain")
  assert (second.optim.lr, second.optim.head_lr, second.optim.schedule) == (
      1e-6, 1e-6, "constant")
  assert second.train.patience == 3 and first.optim.lr == c.optim.lr
  assert out["final_phase"] == final and out["method"] == "aang"
  assert out["test_macro_f1"] == pytest.approx((0.6 if final == "finetune" else 0.5) - 0.1)
