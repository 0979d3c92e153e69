"""Tests of the Flax RoBERTa, its Hugging Face loader and tokenizer, on a tiny checkpoint.

The checkpoint is built here (nothing is downloaded): a byte-level BPE ``tokenizer.json``
trained on a few sentences with RoBERTa's special tokens (``<mask>`` added last, as in
roberta-base), a ``config.json`` with 2 layers of width 32, and random weights saved
with ``safetensors`` under the Hugging Face names of ``RobertaForMaskedLM``. The
reference forward is written below in NumPy from the math, independently of the module.
"""

import json
import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

safetensors_numpy = pytest.importorskip("safetensors.numpy")
tokenizers = pytest.importorskip("tokenizers")

from aux_jax.models import roberta  # noqa: E402
from aux_jax.models.hf_tokenizer import HFTokenizer  # noqa: E402

SENTENCES = [
    "The citation motivates the use of a pretrained language model.",
    "We compare our method with the baseline of the previous work.",
    "Auxiliary objectives help when the task has few labelled examples.",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "Masked language modelling predicts the hidden words of a sentence.",
]
CONFIG = {
    "model_type": "roberta", "architectures": ["RobertaForMaskedLM"],
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 34, "type_vocab_size": 1,
    "layer_norm_eps": 1e-5, "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "pad_token_id": 1, "bos_token_id": 0,
    "eos_token_id": 2, "hidden_act": "gelu", "initializer_range": 0.02,
    "position_embedding_type": "absolute",
}


def _hf_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Random tensors under the HF RobertaForMaskedLM names (PyTorch Linear: [out, in])."""
  d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
  w = {}
  rand = lambda *s: (0.3 * rng.standard_normal(s)).astype(np.float32)

  def linear(name, n_out, n_in):
    w[name + ".weight"], w[name + ".bias"] = rand(n_out, n_in), rand(n_out)

  def norm(name):
    w[name + ".weight"], w[name + ".bias"] = 1 + rand(d), rand(d)

  e = "roberta.embeddings."
  w[e + "word_embeddings.weight"] = rand(v, d)
  w[e + "position_embeddings.weight"] = rand(cfg["max_position_embeddings"], d)
  w[e + "token_type_embeddings.weight"] = rand(cfg["type_vocab_size"], d)
  norm(e + "LayerNorm")
  for i in range(cfg["num_hidden_layers"]):
    p = f"roberta.encoder.layer.{i}."
    for n in ("query", "key", "value"):
      linear(p + "attention.self." + n, d, d)
    linear(p + "attention.output.dense", d, d)
    norm(p + "attention.output.LayerNorm")
    linear(p + "intermediate.dense", f, d)
    linear(p + "output.dense", d, f)
    norm(p + "output.LayerNorm")
  linear("roberta.pooler.dense", d, d)  # in roberta-base files; unused
  linear("lm_head.dense", d, d)
  norm("lm_head.layer_norm")
  w["lm_head.bias"] = rand(v)
  return w


def _write(directory, weights, cfg, tokenizer_json):
  os.makedirs(directory, exist_ok=True)
  safetensors_numpy.save_file(weights, os.path.join(directory, "model.safetensors"))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(cfg, f)
  shutil.copy(tokenizer_json, os.path.join(directory, "tokenizer.json"))
  return str(directory)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  """(directory, HF weights, config dict) of the tiny checkpoint."""
  root = tmp_path_factory.mktemp("roberta")
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1,
                          special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                          show_progress=False)
  bpe.add_special_tokens(["<mask>"])  # the last id, as in roberta-base
  tok_path = str(root / "trained_tokenizer.json")
  bpe.save(tok_path)
  cfg = dict(CONFIG, vocab_size=bpe.get_vocab_size())
  weights = _hf_weights(cfg, np.random.default_rng(0))
  return _write(root / "ckpt", weights, cfg, tok_path), weights, cfg


def numpy_mlm_logits(w, cfg, ids, mask=None):
  """Reference ``RobertaForMaskedLM`` logits f64[B, L, V] from HF-named weights."""
  pad, eps = cfg["pad_token_id"], cfg["layer_norm_eps"]
  heads, (b, length) = cfg["num_attention_heads"], ids.shape
  d = cfg["hidden_size"]
  dh = d // heads
  w = {k: v.astype(np.float64) for k, v in w.items()}
  lin = lambda x, n: x @ w[n + ".weight"].T + w[n + ".bias"]
  gelu = lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))

  def ln(x, n):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w[n + ".weight"] + w[n + ".bias"]

  real = ids != pad
  pos = np.where(real, np.cumsum(real, axis=1) + pad, pad)
  emb = w["roberta.embeddings.word_embeddings.weight"]
  x = (emb[ids] + w["roberta.embeddings.position_embeddings.weight"][pos]
       + w["roberta.embeddings.token_type_embeddings.weight"][0])
  x = ln(x, "roberta.embeddings.LayerNorm")
  allowed = real[:, None, :] & (True if mask is None else mask)
  additive = np.where(allowed, 0.0, -1e30)[:, None]  # [B, 1, Lq, Lk]
  heads_of = lambda y: y.reshape(b, length, heads, dh).transpose(0, 2, 1, 3)
  for i in range(cfg["num_hidden_layers"]):
    p = f"roberta.encoder.layer.{i}."
    q, k, v = (heads_of(lin(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + additive
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ctx = (a @ v).transpose(0, 2, 1, 3).reshape(b, length, d)
    x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    x = ln(x + lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense"),
           p + "output.LayerNorm")
  h = ln(gelu(lin(x, "lm_head.dense")), "lm_head.layer_norm")
  return h @ emb.T + w["lm_head.bias"]


def _logits(model, params, tokens, mask=None):
  return jax.jit(lambda p, t, m: model.lm_logits(p, model.encode(p, t, m)))(
      params, tokens, mask)


def test_mlm_logits_match_numpy_reference(ckpt):
  directory, weights, cfg = ckpt
  model, params, tok, max_len = roberta.load_pretrained(directory, max_len=16)
  assert max_len == 16 and model.max_len == 34 - 2
  ids = tok.encode_batch(SENTENCES[:2] + ["short", "a fox"], max_len)
  assert (ids == tok.pad_id).any()  # a padded batch
  np.testing.assert_allclose(_logits(model, params, ids), numpy_mlm_logits(weights, cfg, ids),
                             rtol=1e-5, atol=1e-5)
  # A per-example (query, key) mask: causal, combined with the padding mask.
  causal = np.broadcast_to(np.tril(np.ones((max_len, max_len), bool)), (4, max_len, max_len))
  np.testing.assert_allclose(_logits(model, params, ids, causal),
                             numpy_mlm_logits(weights, cfg, ids, causal),
                             rtol=1e-5, atol=1e-5)


def test_checkpoint_without_prefix_and_extra_tensors(ckpt, tmp_path):
  directory, weights, cfg = ckpt
  ref = roberta.load_pretrained(directory).params
  bare = {k.removeprefix("roberta."): v for k, v in weights.items()}
  bare["lm_head.decoder.weight"] = weights["roberta.embeddings.word_embeddings.weight"]
  bare["something.else"] = np.zeros(3, np.float32)
  other = _write(tmp_path, bare, cfg, os.path.join(directory, "tokenizer.json"))
  with pytest.warns(UserWarning, match="something.else"):
    got = roberta.load_pretrained(other).params
  for a, b in zip(jax.tree.leaves(ref["encoder"]), jax.tree.leaves(got["encoder"])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(ref["lm_head"]["bias"], got["lm_head"]["bias"])


def test_missing_and_misshaped_tensors_are_named(ckpt, tmp_path):
  directory, weights, cfg = ckpt
  tok_json = os.path.join(directory, "tokenizer.json")
  name = "roberta.encoder.layer.1.attention.self.value.weight"
  missing = {k: v for k, v in weights.items() if k != name}
  with pytest.raises(roberta.CheckpointError, match=name.replace(".", r"\.")) as err:
    roberta.load_pretrained(_write(tmp_path / "missing", missing, cfg, tok_json))
  assert isinstance(err.value, ValueError) and err.value.name == name

  bad = dict(weights, **{"roberta.encoder.layer.0.intermediate.dense.weight":
                         np.zeros((32, 64), np.float32)})  # transposed: HF is [out, in]
  with pytest.raises(roberta.CheckpointError, match=r"\(32, 64\), expected \(64, 32\)") as err:
    roberta.load_pretrained(_write(tmp_path / "bad", bad, cfg, tok_json))
  assert err.value.name == "roberta.encoder.layer.0.intermediate.dense.weight"
  assert (err.value.expected, err.value.found) == ((64, 32), (32, 64))

  with pytest.raises(roberta.CheckpointError, match="max_len"):
    roberta.load_pretrained(directory, max_len=64)


def test_tokenizer_round_trip(ckpt):
  directory, _, cfg = ckpt
  tok = HFTokenizer.from_file(os.path.join(directory, "tokenizer.json"))
  assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id) == (0, 1, 2, 3)
  assert tok.mask_id == tok.vocab_size - 1 == cfg["vocab_size"] - 1
  assert (tok.first_regular_id, tok.end_regular_id) == (4, tok.mask_id)
  texts = [SENTENCES[0], "the fox", ""]
  ids, truncated = tok.encode_batch(texts, 10, return_num_truncated=True)
  assert ids.shape == (3, 10) and ids.dtype == np.int32 and truncated == 1
  assert (ids[:, 0] == tok.cls_id).all() and ids[0, -1] == tok.sep_id
  n = int((ids[1] != tok.pad_id).sum())
  assert ids[1, n - 1] == tok.sep_id and (ids[1, n:] == tok.pad_id).all()
  np.testing.assert_array_equal(ids[2, :3], [tok.cls_id, tok.sep_id, tok.pad_id])
  assert tok.decode(ids[1]) == "the fox"
  full = tok.encode_batch(texts, 64)
  assert tok.decode(full[0]) == SENTENCES[0]
  # Specials only in place: one <s> first, one </s> after the body, then <pad>.
  layout = np.isin(full, [tok.cls_id, tok.sep_id, tok.pad_id])
  np.testing.assert_array_equal(tok.is_special(full), layout)
  assert ((full == tok.cls_id).sum(1) == 1).all() and ((full == tok.sep_id).sum(1) == 1).all()
  special = tok.is_special(jnp.asarray(full))
  assert isinstance(special, jax.Array)
  np.testing.assert_array_equal(special, layout)
  assert tok.is_special(np.array([tok.mask_id, tok.unk_id, 4])).tolist() == [True, True, False]


def test_bfloat16_close_to_float32(ckpt):
  directory, _, _ = ckpt
  f32 = roberta.load_pretrained(directory, max_len=16)
  b16 = roberta.load_pretrained(directory, max_len=16, dtype="bfloat16")
  assert b16.params["encoder"]["layer_0"]["intermediate"]["kernel"].dtype == jnp.float32
  ids = f32.tokenizer.encode_batch(SENTENCES[2:4] + ["a fox"], 16)
  want = _logits(f32.model, f32.params, ids)
  got = _logits(b16.model, b16.params, ids)
  assert got.dtype == jnp.float32
  scale = float(jnp.std(want))
  assert float(jnp.max(jnp.abs(got - want))) < 0.1 * scale
  assert float(jnp.mean(jnp.abs(got - want))) < 0.02 * scale
  assert float(jnp.mean(jnp.argmax(got, -1) == jnp.argmax(want, -1))) > 0.9


def test_interface_dropout_and_heads(ckpt):
  directory, _, _ = ckpt
  model, params, tok, _ = roberta.load_pretrained(directory, num_classes=3,
                                                  query_embedding=True)
  assert set(params) == {"encoder", "lm_head", "cls_head"}
  ids = jnp.asarray(tok.encode_batch(SENTENCES[:2], 12))
  encode, classify = jax.jit(model.encode), jax.jit(model.classify)
  states = encode(params, ids)
  assert states.shape == (2, 12, 32)
  np.testing.assert_array_equal(states, encode(params, ids))
  assert not np.allclose(states, encode(params, ids, None, jax.random.key(1)))
  # The zero query-position table leaves the pretrained head unchanged at load.
  q = jnp.broadcast_to(jnp.arange(12), (2, 12))
  plain = roberta.Roberta(model.config, 3)
  np.testing.assert_allclose(jax.jit(model.lm_logits)(params, states, q),
                             jax.jit(plain.lm_logits)(params, states), rtol=1e-6)
  logits = classify(params["cls_head"], states)
  assert logits.shape == (2, 3)
  assert not np.allclose(logits, classify(params["cls_head"], states, jax.random.key(2)))
  head = model.cls_head.init(jax.random.key(3), jnp.zeros((1, model.width)))["params"]
  assert jax.tree.map(jnp.shape, head) == jax.tree.map(jnp.shape, params["cls_head"])
  fresh = jax.eval_shape(model.init, jax.random.key(0))
  assert (jax.tree.map(jnp.shape, fresh["encoder"])
          == jax.tree.map(jnp.shape, params["encoder"]))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    roberta.load_pretrained(directory)  # pooler and position-id buffer: no warning


def test_lecun_normal_kernel_init():
  """``kernel_init="lecun_normal"`` (the from-scratch AANG config): every dense kernel of
  the encoder and heads is a normal truncated at ±2 of its scale, of variance 1/fan_in
  (checked against scipy's truncated normal); embeddings stay N(0, initializer_range²)
  and biases 0. The default, and a checkpoint's config.json, keep RoBERTa's N(0, 0.02)."""
  from scipy.stats import truncnorm
  cfg = roberta.RobertaConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=256,
                              max_position_embeddings=20, kernel_init="lecun_normal")
  params = roberta.Roberta(cfg, num_classes=3).init(jax.random.key(0))
  kernels = [(jax.tree_util.keystr(p), np.asarray(v)) for p, v in
             jax.tree_util.tree_flatten_with_path(params)[0] if p[-1].key == "kernel"]
  assert len(kernels) == 2 * 6 + 1 + 2  # 6 per layer, MLM dense, classifier dense + out
  unit = truncnorm(-2, 2).std()  # std of the standard normal truncated at ±2
  for name, k in kernels:
    target = 1 / np.sqrt(k.shape[0])
    assert abs(k.std() / target - 1) < 0.06, (name, k.std(), target)
    assert np.abs(k).max() <= 2 * target / unit * (1 + 1e-6), name
    assert np.abs(k).max() > 1.5 * target / unit, name  # the tails are there
  emb = np.asarray(params["encoder"]["embeddings"]["word_embeddings"]["embedding"])
  assert abs(emb.std() / 0.02 - 1) < 0.05
  assert not np.any(params["encoder"]["layer_0"]["intermediate"]["bias"])
  base = roberta.RobertaConfig.from_dict(dict(CONFIG, vocab_size=300))
  assert base.kernel_init == "normal"
  k = roberta.Roberta(base).init(jax.random.key(0))["encoder"]["layer_0"]["output"]["kernel"]
  assert abs(float(np.std(k)) / 0.02 - 1) < 0.06
  with pytest.raises(ValueError, match="kernel_init"):
    roberta.RobertaConfig(kernel_init="xavier")
