"""RoBERTa (Liu et al., 2019, arXiv:1907.11692) in Flax, loaded from a Hugging Face directory.

The math is that of Hugging Face's ``RobertaModel`` / ``RobertaForMaskedLM`` (BERT's
post-LayerNorm encoder, Devlin et al., 2019), so a checkpoint gives the same logits:

    p_i = pad + #{j <= i : t_j != pad}  at real tokens (pad + 1, pad + 2, ...),  pad  at PAD
    x_0 = LN(W[t] + P[p] + T[0])                                   [B, L, D]
    a   = softmax(Q K^T / sqrt(d_h) + A) V          per head, A = 0 where allowed, else min
    x'  = LN(x + W_o a + b_o)                       (post-LN: the norm follows the residual)
    x_{l+1} = LN(x' + W_2 gelu(W_1 x' + b_1) + b_2)                 gelu is exact (erf)

``A`` comes from a per-example mask bool[B, L, L] (query, key) AND the padding mask of
the keys, so AANG's causal, anti-causal and random-factorised masks are data. Dropout
(``hidden_dropout_prob`` after the embeddings and on both residual branches,
``attention_probs_dropout_prob`` on the attention weights) is active only when a dropout
key is given. ``dtype`` is the compute dtype (float32 or bfloat16); parameters stay
float32 and the softmax and logits are float32.

Heads:

* MLM (``RobertaLMHead``): ``logits = LN(gelu(W h + b)) E^T + c`` with ``E`` the word
  embeddings (tied) and ``c`` its own bias. It predicts the token *at* each position, so
  the ``query_pos`` argument of the AANG interface is ignored by default; with
  ``query_embedding=True`` a zero-initialised query-position table is added to the
  states, which leaves the pretrained head exact at load and lets ordered (L2R, R2L, random-factorised) objectives learn which
  position to predict.
* classification (``RobertaClassificationHead``): ``W_2 tanh(W_1 h_<s> + b_1) + b_2``
  on the ``<s>`` state, with dropout before each dense layer; always freshly initialised.

`Roberta` bundles them (``init``, ``encode``, ``lm_logits``, ``classify``; params
``{"encoder", "lm_head", "cls_head"}``). This is the library's one Transformer encoder:
AANG uses its encoder and MLM head (one head per objective, `aux_jax.aang.model`), loaded
from a checkpoint or, from scratch, a small freshly initialised config
(`aux_jax.aang.model.fresh_net`). `load_pretrained` reads ``config.json``,
``model.safetensors`` and ``tokenizer.json`` with an explicit table of tensor names
(`checkpoint_names`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aux_jax.models.hf_tokenizer import HFTokenizer


class CheckpointError(ValueError):
  """A checkpoint does not fit the model (names the file or tensor); also raised by
  `aux_jax.models.resnet.load_torchvision_weights`.

  Attributes:
    name: the checkpoint's tensor name at fault (Hugging Face or torchvision), or None.
    expected, found: the shapes, for a mis-shaped tensor (else None).
  """

  def __init__(self, message: str, name: str | None = None,
               expected: tuple | None = None, found: tuple | None = None):
    super().__init__(message)
    self.name, self.expected, self.found = name, expected, found


_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class RobertaConfig:
  """The fields of a Hugging Face RoBERTa ``config.json`` that the model uses.

  Attributes:
    vocab_size: rows of the word embedding V (50265 for roberta-base).
    hidden_size: width D.
    num_hidden_layers: number of blocks.
    num_attention_heads: heads (must divide D).
    intermediate_size: hidden size of each block's MLP.
    max_position_embeddings: rows of the position table (514: 512 tokens + pad offset).
    type_vocab_size: rows of the token-type table (only type 0 is used).
    layer_norm_eps: LayerNorm epsilon.
    hidden_dropout_prob: dropout on embeddings and residual branches.
    attention_probs_dropout_prob: dropout on attention weights.
    pad_token_id: PAD id; positions are offset by it (see `position_ids`).
    hidden_act: MLP activation, "gelu" (exact) for RoBERTa.
    initializer_range: std of the normal initialiser (fresh weights, heads).
    classifier_dropout: classification-head dropout, None for ``hidden_dropout_prob``.
    kernel_init: not a RoBERTa field ("normal" for every checkpoint). "normal": dense
      kernels ~ N(0, initializer_range^2), RoBERTa's; "lecun_normal": Flax's default,
      a truncated normal of variance 1/fan_in (LeCun et al., 1998), for small models
      trained from scratch (at width 64, 0.02 is 1/6 of 1/sqrt(fan_in)). Embeddings
      are N(0, initializer_range^2) and biases 0 either way.
  """

  vocab_size: int = 50265
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 514
  type_vocab_size: int = 1
  layer_norm_eps: float = 1e-5
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  pad_token_id: int = 1
  hidden_act: str = "gelu"
  initializer_range: float = 0.02
  classifier_dropout: float | None = None
  kernel_init: str = "normal"

  def __post_init__(self):
    if self.kernel_init not in ("normal", "lecun_normal"):
      raise ValueError(f"kernel_init {self.kernel_init!r} is not 'normal' or 'lecun_normal'.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by "
                       f"num_attention_heads ({self.num_attention_heads}).")
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; "
                       f"known: {sorted(_ACTIVATIONS)}.")
    if self.max_len < 1:
      raise ValueError(f"max_position_embeddings ({self.max_position_embeddings}) leaves "
                       f"no position after the pad offset {self.pad_token_id + 1}.")

  @property
  def max_len(self) -> int:
    """Longest sequence: the position table minus the ``pad_token_id + 1`` offset."""
    return self.max_position_embeddings - self.pad_token_id - 1

  @classmethod
  def from_dict(cls, d: dict) -> RobertaConfig:
    """From a parsed ``config.json``; unknown keys are ignored.

    Raises:
      CheckpointError: for a position embedding other than "absolute".
    """
    kind = d.get("position_embedding_type", "absolute")
    if kind != "absolute":
      raise CheckpointError(f"position_embedding_type {kind!r} is not supported "
                            "(only 'absolute', as in RoBERTa).")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def position_ids(tokens: jax.Array, pad_id: int) -> jax.Array:
  """RoBERTa's positions (HF ``create_position_ids_from_input_ids``).

  Args:
    tokens: i32[..., L] token ids.
    pad_id: the PAD id.

  Returns:
    i32[..., L]: ``pad_id + k`` at the k-th real token (k = 1, 2, ...), ``pad_id`` at PAD.
  """
  real = (tokens != pad_id).astype(jnp.int32)
  return jnp.cumsum(real, axis=-1) * real + pad_id


def attention_bias(tokens: jax.Array, mask: jax.Array | None, pad_id: int) -> jax.Array:
  """Additive attention bias f32[B, L, L]: 0 where query i may read key j, else f32 min.

  Args:
    tokens: i32[B, L] ids; PAD keys are always hidden.
    mask: bool[B, L, L] (query, key) or None for the padding mask alone.
    pad_id: the PAD id.
  """
  allowed = jnp.broadcast_to((tokens != pad_id)[:, None, :], tokens.shape + tokens.shape[-1:])
  if mask is not None:
    allowed = allowed & mask
  return jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


def _dense(config: RobertaConfig, features: int, dtype: Any, name: str) -> nn.Dense:
  init = (nn.initializers.lecun_normal() if config.kernel_init == "lecun_normal"
          else nn.initializers.normal(config.initializer_range))
  return nn.Dense(features, dtype=dtype, name=name, kernel_init=init)


def _layer_norm(config: RobertaConfig, dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


class RobertaEmbeddings(nn.Module):
  """``LN(W[t] + P[position_ids(t)] + T[0])`` then dropout: i32[B, L] -> [B, L, D]."""

  config: RobertaConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, deterministic: bool):
    c = self.config
    embed = lambda n, name: nn.Embed(
        n, c.hidden_size, dtype=self.dtype, name=name,
        embedding_init=nn.initializers.normal(c.initializer_range))
    x = embed(c.vocab_size, "word_embeddings")(tokens)
    x = x + embed(c.max_position_embeddings, "position_embeddings")(
        position_ids(tokens, c.pad_token_id))
    x = x + embed(c.type_vocab_size, "token_type_embeddings")(jnp.zeros_like(tokens))
    x = _layer_norm(c, self.dtype, "layer_norm")(x)
    return nn.Dropout(c.hidden_dropout_prob)(x, deterministic=deterministic)


class RobertaAttention(nn.Module):
  """Multi-head self-attention and its post-LN residual: ``LN(x + W_o MHA(x) + b_o)``.

  Call: ``(x [B, L, D], bias f32[B, L, L], deterministic) -> [B, L, D]``.
  """

  config: RobertaConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    c = self.config
    heads = c.num_attention_heads
    head_dim = c.hidden_size // heads
    split = lambda y: y.reshape(y.shape[:-1] + (heads, head_dim))
    q, k, v = (split(_dense(c, c.hidden_size, self.dtype, n)(x))
               for n in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
    probs = jax.nn.softmax(scores.astype(jnp.float32) + bias[:, None], axis=-1)
    probs = nn.Dropout(c.attention_probs_dropout_prob)(
        probs.astype(self.dtype), deterministic=deterministic)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape)
    y = _dense(c, c.hidden_size, self.dtype, "output")(context)
    y = nn.Dropout(c.hidden_dropout_prob)(y, deterministic=deterministic)
    return _layer_norm(c, self.dtype, "layer_norm")(x + y)


class RobertaLayer(nn.Module):
  """One post-LN block: attention, then ``LN(x + W_2 act(W_1 x + b_1) + b_2)``."""

  config: RobertaConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    c = self.config
    x = RobertaAttention(c, self.dtype, name="attention")(x, bias, deterministic)
    y = _ACTIVATIONS[c.hidden_act](_dense(c, c.intermediate_size, self.dtype, "intermediate")(x))
    y = _dense(c, c.hidden_size, self.dtype, "output")(y)
    y = nn.Dropout(c.hidden_dropout_prob)(y, deterministic=deterministic)
    return _layer_norm(c, self.dtype, "output_layer_norm")(x + y)


class RobertaEncoder(nn.Module):
  """Token states: ``(tokens i32[B, L], mask bool[B, L, L] | None, deterministic) -> [B, L, D]``.

  The word embedding is ``params["embeddings"]["word_embeddings"]["embedding"]``
  (f32[V, D]); blocks are ``layer_0`` ... ``layer_{n-1}``. States are in ``dtype``.
  """

  config: RobertaConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, mask=None, deterministic: bool = True):
    c = self.config
    if tokens.shape[-1] > c.max_len:
      raise ValueError(f"Sequence length {tokens.shape[-1]} exceeds the model's max_len "
                       f"{c.max_len} (max_position_embeddings - pad_token_id - 1).")
    bias = attention_bias(tokens, mask, c.pad_token_id)
    x = RobertaEmbeddings(c, self.dtype, name="embeddings")(tokens, deterministic)
    for i in range(c.num_hidden_layers):
      x = RobertaLayer(c, self.dtype, name=f"layer_{i}")(x, bias, deterministic)
    return x


class RobertaLMHead(nn.Module):
  """MLM logits f32[B, L, V] from states [B, L, D] and the tied embedding f32[V, D].

  ``logits = LN(gelu(W h + b)) E^T + c`` (HF ``RobertaLMHead``; gelu exact).

  Attributes:
    config: the encoder config.
    dtype: compute dtype.
    query_embedding: add a learned query-position table ``Q[query_pos]`` (f32[max_len,
      D], initialised to zero, so the pretrained head is unchanged at load) to the states
      first; otherwise ``query_pos`` is ignored.
  """

  config: RobertaConfig
  dtype: Any = jnp.float32
  query_embedding: bool = False

  @nn.compact
  def __call__(self, states, embedding, query_pos=None):
    c = self.config
    x = states
    if self.query_embedding:
      q = self.param("query_position", nn.initializers.zeros, (c.max_len, c.hidden_size))
      x = x + q.astype(self.dtype)[query_pos]
    x = jax.nn.gelu(_dense(c, c.hidden_size, self.dtype, "dense")(x), approximate=False)
    x = _layer_norm(c, self.dtype, "layer_norm")(x)
    logits = jnp.einsum("bld,vd->blv", x, embedding.astype(self.dtype))
    bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,))
    return logits.astype(jnp.float32) + bias


class RobertaClassificationHead(nn.Module):
  """Class logits f32[B, K] from the ``<s>`` state [B, D] (HF ``RobertaClassificationHead``).

  ``dropout → dense(D) → tanh → dropout → out_proj(K)``.
  """

  config: RobertaConfig
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, cls_state, deterministic: bool = True):
    c = self.config
    rate = c.hidden_dropout_prob if c.classifier_dropout is None else c.classifier_dropout
    x = nn.Dropout(rate)(cls_state, deterministic=deterministic)
    x = jnp.tanh(_dense(c, c.hidden_size, self.dtype, "dense")(x))
    x = nn.Dropout(rate)(x, deterministic=deterministic)
    return _dense(c, self.num_classes, self.dtype, "out_proj")(x).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Roberta:
  """RoBERTa and its heads as pure functions over one params dict.

  ``params = {"encoder", "lm_head", "cls_head"}``; ``params["encoder"]`` is the shared
  body, and the LM head decodes with its word embedding (tied).

  Attributes:
    config: the checkpoint's config.
    num_classes: classes of the classification head.
    dtype: compute dtype (jnp.float32 or jnp.bfloat16); params are float32.
    query_embedding: see `RobertaLMHead` (False: the pretrained MLM head, which predicts
      the token at each position and ignores ``query_pos``).
  """

  config: RobertaConfig
  num_classes: int = 2
  dtype: Any = jnp.float32
  query_embedding: bool = False

  @property
  def width(self) -> int:
    return self.config.hidden_size

  @property
  def max_len(self) -> int:
    return self.config.max_len

  @property
  def encoder(self) -> RobertaEncoder:
    return RobertaEncoder(self.config, self.dtype)

  @property
  def lm_head(self) -> RobertaLMHead:
    return RobertaLMHead(self.config, self.dtype, self.query_embedding)

  @property
  def cls_head(self) -> RobertaClassificationHead:
    """The classification head; ``cls_head.init(key, f32[1, D])`` makes fresh params."""
    return RobertaClassificationHead(self.config, self.num_classes, self.dtype)

  def init(self, key: jax.Array, length: int = 8) -> dict:
    """Freshly initialised params (normal(initializer_range) embeddings, kernels as
    ``config.kernel_init``, zero biases)."""
    k_e, k_l, k_c = jax.random.split(key, 3)
    tokens = jnp.zeros((1, min(length, self.max_len)), jnp.int32)
    enc = self.encoder.init(k_e, tokens)["params"]
    states = jnp.zeros(tokens.shape + (self.width,), self.dtype)
    emb = enc["embeddings"]["word_embeddings"]["embedding"]
    lm = self.lm_head.init(k_l, states, emb, jnp.zeros_like(tokens))["params"]
    cls = self.cls_head.init(k_c, states[:, 0])["params"]
    return {"encoder": enc, "lm_head": lm, "cls_head": cls}

  def encode(self, params: dict, tokens: jax.Array, mask: jax.Array | None = None,
             key: jax.Array | None = None) -> jax.Array:
    """States [B, L, D] (in ``dtype``) of tokens i32[B, L] under mask bool[B, L, L].

    The mask (None: padding only) is combined with the padding mask of ``tokens``;
    dropout is on iff ``key`` is given.
    """
    rngs = None if key is None else {"dropout": key}
    return self.encoder.apply({"params": params["encoder"]}, tokens, mask,
                              deterministic=key is None, rngs=rngs)

  def lm_logits(self, params: dict, states: jax.Array,
                query_pos: jax.Array | None = None) -> jax.Array:
    """MLM logits f32[B, L, V]; ``query_pos`` i32[B, L] is used only with ``query_embedding``."""
    emb = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
    return self.lm_head.apply({"params": params["lm_head"]}, states, emb, query_pos)

  def classify(self, head_params: dict, states: jax.Array,
               key: jax.Array | None = None) -> jax.Array:
    """Class logits f32[B, K] from the ``<s>`` (position 0) state; dropout iff ``key``."""
    rngs = None if key is None else {"dropout": key}
    return self.cls_head.apply({"params": head_params}, states[:, 0],
                               deterministic=key is None, rngs=rngs)


# --------------------------------------------------------------------------------------
# Hugging Face checkpoints.

# HF name -> path in params["encoder"]; body names carry a "roberta." prefix in
# RobertaForMaskedLM checkpoints and none in RobertaModel ones.
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": ("embeddings", "word_embeddings", "embedding"),
    "embeddings.position_embeddings.weight": ("embeddings", "position_embeddings", "embedding"),
    "embeddings.token_type_embeddings.weight":
        ("embeddings", "token_type_embeddings", "embedding"),
    "embeddings.LayerNorm.weight": ("embeddings", "layer_norm", "scale"),
    "embeddings.LayerNorm.bias": ("embeddings", "layer_norm", "bias"),
}
# "encoder.layer.{i}." + HF name -> ("layer_{i}",) + path.
_LAYER = {
    "attention.self.query.weight": ("attention", "query", "kernel"),
    "attention.self.query.bias": ("attention", "query", "bias"),
    "attention.self.key.weight": ("attention", "key", "kernel"),
    "attention.self.key.bias": ("attention", "key", "bias"),
    "attention.self.value.weight": ("attention", "value", "kernel"),
    "attention.self.value.bias": ("attention", "value", "bias"),
    "attention.output.dense.weight": ("attention", "output", "kernel"),
    "attention.output.dense.bias": ("attention", "output", "bias"),
    "attention.output.LayerNorm.weight": ("attention", "layer_norm", "scale"),
    "attention.output.LayerNorm.bias": ("attention", "layer_norm", "bias"),
    "intermediate.dense.weight": ("intermediate", "kernel"),
    "intermediate.dense.bias": ("intermediate", "bias"),
    "output.dense.weight": ("output", "kernel"),
    "output.dense.bias": ("output", "bias"),
    "output.LayerNorm.weight": ("output_layer_norm", "scale"),
    "output.LayerNorm.bias": ("output_layer_norm", "bias"),
}
# HF name -> path in params["lm_head"] (never prefixed).
_LM_HEAD = {
    "lm_head.dense.weight": ("dense", "kernel"),
    "lm_head.dense.bias": ("dense", "bias"),
    "lm_head.layer_norm.weight": ("layer_norm", "scale"),
    "lm_head.layer_norm.bias": ("layer_norm", "bias"),
    "lm_head.bias": ("bias",),
}
# Stored elsewhere under another name by some checkpoints (the same tensor in HF).
_ALIASES = {"lm_head.bias": "lm_head.decoder.bias"}
# Known tensors the model does not use: the pooler (not used by the MLM or the
# classification head), the position-id buffer, and the decoder tied to the embeddings.
_IGNORED = ("pooler.", "embeddings.position_ids", "lm_head.decoder.")


def checkpoint_names(num_layers: int, prefix: str = "roberta.") -> dict[str, tuple[str, ...]]:
  """The explicit map from HF tensor names to paths in our params.

  Args:
    num_layers: ``num_hidden_layers``.
    prefix: prefix of the body's names ("roberta." or "").

  Returns:
    ``{hf_name: ("encoder" | "lm_head", ...path)}``. Linear weights (``*.weight`` mapped
    to a ``kernel``) are stored transposed by HF: f32[out, in] against our [in, out].
  """
  names = {prefix + k: ("encoder",) + v for k, v in _EMBEDDINGS.items()}
  for i in range(num_layers):
    names.update({f"{prefix}encoder.layer.{i}.{k}": ("encoder", f"layer_{i}") + v
                  for k, v in _LAYER.items()})
  names.update({k: ("lm_head",) + v for k, v in _LM_HEAD.items()})
  return names


def _read_safetensors(directory: str) -> dict[str, np.ndarray]:
  """All tensors of ``model.safetensors`` (or of the shards its index lists)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  single = os.path.join(directory, "model.safetensors")
  if os.path.exists(single):
    return load_file(single)
  index = single + ".index.json"
  if os.path.exists(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    return {k: v for s in shards for k, v in load_file(os.path.join(directory, s)).items()}
  raise CheckpointError(
      f"No model.safetensors in {directory!r} (found: {sorted(os.listdir(directory))}). "
      "Download the safetensors weights; pytorch_model.bin is not read (no PyTorch).")


def convert_weights(tensors: dict[str, np.ndarray], shapes: dict) -> dict:
  """Maps HF tensors onto a params tree of the given shapes.

  Args:
    tensors: HF name -> array, e.g. from ``safetensors.numpy.load_file``.
    shapes: the target tree ``{"encoder", "lm_head"}`` of arrays or ShapeDtypeStructs
      (e.g. ``jax.eval_shape(model.init, key)``); its leaves give the expected shapes.

  Returns:
    The same tree of f32 NumPy arrays. Unused known tensors (pooler, position-id
    buffer, tied decoder) are ignored; unknown ones are listed in a warning.

  Raises:
    CheckpointError: naming the missing tensor, or the mis-shaped one with the expected
      (HF layout) and found shapes.
  """
  prefix = "roberta." if any(k.startswith("roberta.") for k in tensors) else ""
  num_layers = sum(1 for k in shapes["encoder"] if k.startswith("layer_"))
  out: dict = {}
  used = set()
  for hf_name, path in checkpoint_names(num_layers, prefix).items():
    name = hf_name if hf_name in tensors else _ALIASES.get(hf_name, hf_name)
    if name not in tensors:
      hint = (" Is it a RobertaModel checkpoint without the MLM head? Use a "
              "RobertaForMaskedLM one (e.g. roberta-base).") if path[0] == "lm_head" else ""
      raise CheckpointError(f"Checkpoint tensor {hf_name!r} is missing (expected by "
                            f"{'/'.join(path)}; the checkpoint has {len(tensors)} "
                            f"tensors).{hint}", name=hf_name)
    target = shapes
    for p in path:
      target = target[p]
    kernel = path[-1] == "kernel"
    expected = tuple(target.shape[::-1] if kernel else target.shape)
    value = np.asarray(tensors[name])
    if value.shape != expected:
      raise CheckpointError(f"Checkpoint tensor {name!r} has shape {value.shape}, "
                            f"expected {expected} (for {'/'.join(path)}).",
                            name=name, expected=expected, found=value.shape)
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = (value.T if kernel else value).astype(np.float32)
    used.add(name)
  unknown = sorted(k for k in tensors if k not in used
                   and not k.removeprefix(prefix).startswith(_IGNORED))
  if unknown:
    warnings.warn(f"{len(unknown)} checkpoint tensors are not used: {unknown[:10]}"
                  f"{' ...' if len(unknown) > 10 else ''}", stacklevel=2)
  return out


class Pretrained(NamedTuple):
  """What `load_pretrained` returns.

  Attributes:
    model: the `Roberta` model object.
    params: ``{"encoder", "lm_head", "cls_head"}``, f32 arrays.
    tokenizer: the checkpoint's `HFTokenizer`.
    max_len: the sequence length to encode with (``tokenizer.encode_batch(texts, max_len)``).
  """

  model: Roberta
  params: dict
  tokenizer: HFTokenizer
  max_len: int


def load_pretrained(directory: str, *, num_classes: int = 2, max_len: int | None = None,
                    dtype: Any = jnp.float32, query_embedding: bool = False,
                    key: jax.Array | None = None) -> Pretrained:
  """Loads a Hugging Face RoBERTa checkpoint directory, as downloaded from the Hub.

  Reads ``config.json``, ``model.safetensors`` (NumPy, no PyTorch) and ``tokenizer.json``.
  The encoder and the MLM head come from the checkpoint; the classification head (and
  the query-position table, if any) is fresh.

  Args:
    directory: the checkpoint directory.
    num_classes: classes of the classification head.
    max_len: longest sequence; None for the checkpoint's (``max_position_embeddings -
      pad_token_id - 1``, 512 for roberta-base), never more.
    dtype: compute dtype, jnp.float32 or jnp.bfloat16 (or their names).
    query_embedding: see `RobertaLMHead`.
    key: PRNG key of the fresh classification head (default ``jax.random.key(0)``).

  Returns:
    `Pretrained` ``(model, params, tokenizer, max_len)``.

  Raises:
    CheckpointError: a missing file, an unsupported config, a missing or mis-shaped
      tensor, a tokenizer that does not fit the config, or ``max_len`` too large.
  """
  config_path = os.path.join(directory, "config.json")
  if not os.path.exists(config_path):
    raise CheckpointError(f"No config.json in {directory!r}.")
  with open(config_path) as f:
    raw = json.load(f)
  if raw.get("model_type", "roberta") != "roberta":
    warnings.warn(f"model_type {raw['model_type']!r} is not 'roberta'; loading it as one.",
                  stacklevel=2)
  config = RobertaConfig.from_dict(raw)
  max_len = config.max_len if max_len is None else max_len
  if not 2 <= max_len <= config.max_len:
    raise CheckpointError(f"max_len={max_len} must be in [2, {config.max_len}] for this "
                          "checkpoint.")
  tok_path = os.path.join(directory, "tokenizer.json")
  if not os.path.exists(tok_path):
    raise CheckpointError(f"No tokenizer.json in {directory!r}.")
  tokenizer = HFTokenizer.from_file(tok_path)
  if tokenizer.pad_id != config.pad_token_id or tokenizer.vocab_size > config.vocab_size:
    raise CheckpointError(
        f"tokenizer.json does not fit config.json: pad id {tokenizer.pad_id} vs "
        f"pad_token_id {config.pad_token_id}, vocabulary {tokenizer.vocab_size} vs "
        f"vocab_size {config.vocab_size}.")
  model = Roberta(config, num_classes, jnp.dtype(dtype), query_embedding)
  key = jax.random.key(0) if key is None else key
  shapes = jax.eval_shape(model.init, key)
  params = convert_weights(_read_safetensors(directory), shapes)
  if query_embedding:
    params["lm_head"]["query_position"] = np.zeros(
        shapes["lm_head"]["query_position"].shape, np.float32)
  params = jax.tree.map(jnp.asarray, params)
  params["cls_head"] = model.cls_head.init(key, jnp.zeros((1, model.width)))["params"]
  return Pretrained(model, params, tokenizer, max_len)
