"""AANG on a pretrained RoBERTa directory (``--config.model.pretrained``), end to end.

The tiny checkpoint is built here as in test_roberta.py (random weights under the
Hugging Face names, a 2-layer width-32 config.json, a BPE tokenizer.json trained on a
few sentences with ``<mask>`` as the last id); nothing is downloaded.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("safetensors.numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_roberta as R  # noqa: E402  (the tiny checkpoint's builder)

from aux_jax.aang import objectives  # noqa: E402
from aux_jax.aang.experiment import build_net  # noqa: E402
from configs import aang_citation_intent  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = {"Uses": "pretrained", "Background": "baseline", "Future": "objectives"}


@pytest.fixture(scope="module")
def ckpt_and_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("roberta_aang")
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(R.SENTENCES, vocab_size=300, min_frequency=1,
                          special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                          show_progress=False)
  bpe.add_special_tokens(["<mask>"])
  bpe.save(str(root / "tokenizer.json"))
  cfg = dict(R.CONFIG, vocab_size=bpe.get_vocab_size())
  weights = R._hf_weights(cfg, np.random.default_rng(0))
  ckpt = R._write(root / "ckpt", weights, cfg, str(root / "tokenizer.json"))
  data = root / "data"
  data.mkdir()
  rng = np.random.default_rng(0)
  for split, n in (("train", 16), ("dev", 8), ("test", 8)):
    with open(data / f"{split}.jsonl", "w") as f:
      for _ in range(n):
        label = list(LABELS)[int(rng.integers(3))]
        words = list(rng.choice(R.SENTENCES[int(rng.integers(5))].split(), 3))
        # One text is longer than max_len: truncation is reported.
        extra = " ".join(R.SENTENCES) if split == "train" and not f.tell() else ""
        f.write(json.dumps({"text": " ".join(words + [LABELS[label], extra]),
                            "label": label}) + "\n")
  return ckpt, str(data), weights


def test_objectives_use_the_checkpoint_vocabulary_and_heads(ckpt_and_data):
  ckpt, _, weights = ckpt_and_data
  c = aang_citation_intent.get_config("aang")
  c.model.pretrained, c.data.max_len = ckpt, 1000
  net, tok, max_len = build_net(c, num_classes=3)
  assert max_len == 32                         # capped by the checkpoint (34 - 1 - 1)
  spec = objectives.token_spec(tok)
  assert spec.mask_id == tok.vocab_size - 1 and spec.mask_id in spec.special_ids
  assert spec.random_high == spec.mask_id and spec.pad_id == 1
  params = jax.jit(lambda k: net.init(k, 2, 1))(jax.random.key(0))
  # Every LM head starts as a copy of the checkpoint's MLM head, decoder = embedding.
  emb = weights["roberta.embeddings.word_embeddings.weight"]
  for i in range(2):
    np.testing.assert_allclose(params["lm_heads"]["head"]["bias"][i], weights["lm_head.bias"])
    np.testing.assert_allclose(params["lm_heads"]["head"]["dense"]["kernel"][i],
                               weights["lm_head.dense.weight"].T)
    np.testing.assert_allclose(params["lm_heads"]["decoder"][i], emb)
  np.testing.assert_allclose(
      params["encoder"]["layer_1"]["output"]["kernel"],
      weights["roberta.encoder.layer.1.output.dense.weight"].T)


def test_launcher_runs_aang_on_a_pretrained_directory(ckpt_and_data, tmp_path):
  ckpt, data, _ = ckpt_and_data
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  work = tmp_path / "w"
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=configs/aang_citation_intent.py:aang",
         f"--config.model.pretrained={ckpt}", f"--config.data_dir={data}",
         f"--workdir={work}",
         # tiny: 3 steps with a meta-update after each, then 2 fine-tuning steps
         "--config.optim.num_steps=3", "--config.train.eval_every=3",
         "--config.train.log_every=1", "--config.aang.meta_every=1",
         "--config.data.max_len=24", "--config.data.batch_size=4",
         "--config.data.aux_batch_size=4", "--config.data.dev_batch_size=4",
         "--config.data.eval_batch_size=8", "--config.aang.dev_head.steps=2",
         "--config.finetune.optim.num_steps=2", "--config.finetune.train.eval_every=1"]
  r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "truncated to 24 tokens" in r.stdout
  with open(work / "summary.json") as f:
    summary = json.load(f)
  assert summary["pretrain"]["model"] == ckpt
  assert summary["pretrain"]["num_truncated"]["train"] >= 1
  assert 0.0 <= summary["test_macro_f1"] <= 1.0 and summary["finetune"]["steps"] == 2
  with open(work / "pretrain" / "metrics.jsonl") as f:
    records = [json.loads(l) for l in f]
  # Logged: the logits each step used. Step 1 used the zero start; its meta-update
  # (one AANG step's cosines) changed the factored weights that step 2 used.
  assert not any(np.any(records[0][k]) for k in ("w_transform", "w_representation",
                                                 "w_all"))
  assert np.any(records[1]["w_all"]) and np.any(records[1]["w_representation"])
  assert all(np.isfinite(r["loss_primary"]) for r in records)


def test_from_scratch_and_checkpoint_use_the_same_encoder(ckpt_and_data, tmp_path):
  """One encoder: both settings build `RobertaEncoder` and `RobertaLMHead`, fresh or
  loaded, and both read their tokenizer.json through `HFTokenizer`."""
  from aux_jax.models.hf_tokenizer import HFTokenizer
  from aux_jax.models.roberta import RobertaEncoder, RobertaLMHead
  ckpt, _, _ = ckpt_and_data
  c = aang_citation_intent.get_config("aang")
  scratch, tok_s, _ = build_net(c, 3, str(tmp_path))
  c.model.pretrained = ckpt
  loaded, tok_p, _ = build_net(c, 3, str(tmp_path))
  assert type(scratch.encoder) is type(loaded.encoder) is RobertaEncoder
  assert type(scratch.lm_module) is type(loaded.lm_module) is RobertaLMHead
  assert type(tok_s) is type(tok_p) is HFTokenizer
  assert scratch.pretrained is None and loaded.pretrained is not None
  k = c.model.kwargs
  cfg = scratch.model.config
  assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
          cfg.intermediate_size, cfg.vocab_size) == (k.width, k.depth, k.num_heads,
                                                     k.mlp_dim, tok_s.vocab_size)
  assert cfg.max_len == c.data.max_len and cfg.pad_token_id == tok_s.pad_id
  # From scratch: lecun_normal kernels; the checkpoint keeps RoBERTa's N(0, 0.02) law.
  assert cfg.kernel_init == "lecun_normal" and loaded.model.config.kernel_init == "normal"
  q = scratch.init_encoder(jax.random.key(0))["layer_0"]["attention"]["query"]["kernel"]
  assert abs(float(q.std()) * k.width**0.5 - 1) < 0.1
  # Same parameter layout: the same module's tree, at the two sizes.
  enc_s = scratch.init_encoder(jax.random.key(0))
  enc_p = loaded.init_encoder(jax.random.key(0))
  paths = lambda t: {p for p, _ in jax.tree_util.tree_flatten_with_path(t)[0]}
  assert paths(enc_s) == paths(enc_p)
