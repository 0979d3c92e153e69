"""The from-scratch byte-level tokenizer.json: ids are the text's UTF-8 bytes, the file in
the workdir round-trips, and `HFTokenizer` reads it as AANG does (no download)."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from aux_jax.aang import objectives  # noqa: E402
from aux_jax.aang.experiment import build_net  # noqa: E402
from aux_jax.models.hf_tokenizer import HFTokenizer, byte_level_tokenizer, write_byte_level  # noqa: E402
from configs import aang_citation_intent  # noqa: E402

TEXTS = ["Hello wörld", "", "\x00\x7f\n\t é漢字 <mask> </s>", "x" * 50]


def _bytes(text):
  return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)


def test_ids_are_the_utf8_bytes_with_robertas_specials(tmp_path):
  tok = HFTokenizer.from_file(write_byte_level(str(tmp_path / "tokenizer.json")))
  assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 260)
  assert tok.vocab_size == 261 and (tok.first_regular_id, tok.end_regular_id) == (4, 260)
  ids, truncated = tok.encode_batch(TEXTS, 24, return_num_truncated=True)
  assert ids.shape == (4, 24) and truncated == 2          # the last two are longer than 22 bytes
  for text, row in zip(TEXTS, ids):
    body = _bytes(text)[:22] + 4          # a text spelling "<mask>" stays its bytes
    np.testing.assert_array_equal(row[: body.size + 2], [0, *body, 2])
    assert (row[body.size + 2:] == 1).all()
    if _bytes(text).size <= 22:
      assert tok.decode(row) == text      # lossless, any byte
  spec = objectives.token_spec(tok)
  assert spec.special_ids == (0, 1, 2, 3, 260) and (spec.random_low, spec.random_high) == (
      4, 260)


def test_workdir_file_round_trips_and_is_what_the_experiment_reads(tmp_path):
  c = aang_citation_intent.get_config("aang")
  work = tmp_path / "pretrain"
  net, tok, max_len = build_net(c, 3, str(work))
  path = work / "tokenizer.json"
  with open(path) as f:
    saved = json.load(f)
  # The file is the library's serialisation of the byte-level tokenizer, and reads back
  # to the same tokenizer (same JSON, same ids).
  assert saved == json.loads(byte_level_tokenizer().to_str())
  assert saved["pre_tokenizer"]["type"] == "ByteLevel" and saved["model"]["type"] == "BPE"
  again = HFTokenizer.from_file(str(path))
  np.testing.assert_array_equal(again.encode_batch(TEXTS, max_len),
                                tok.encode_batch(TEXTS, max_len))
  assert net.vocab_size == tok.vocab_size == 261
  # An existing file is kept (a resumed run reads what it was trained with).
  mtime = os.path.getmtime(path)
  write_byte_level(str(path))
  assert os.path.getmtime(path) == mtime
