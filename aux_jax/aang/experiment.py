"""AANG as an experiment of the one training loop (`aux_jax.train.loop`).

`experiment_from_config(config)` builds the `Experiment` the loop drives for
``runner = "aang"`` (and for each phase of ``runner = "two_phase"`` with
``phase_runner = "aang"``: the search, then the final fine-tuning). ``config.method.name``:

* ``aang``: the searched auxiliary objectives (`aux_jax.aang.step.make_aang_step`),
  meta-updated every ``aang.meta_every`` steps (the loop's upper step);
* ``static_mt``: the same program with ``aux_lr = balance_lr = 0``: the original's
  static multitask baseline (README.md:64 and ``partial_big_multi`` of ldery/
  Automating-Auxiliary-Learning @ f876fe2);
* ``tapt``: the same program on the one-objective space ``tapt`` (task, BERT,
  bidirectional, denoise), fixed weights;
* ``stl``: the primary task alone (also the final fine-tuning stage).

Data: ``config.data_dir`` holds train/dev/test.jsonl (`aux_jax.aang.data`). Model: one
encoder, `aux_jax.models.roberta`, and one tokenizer path, `aux_jax.models.hf_tokenizer`:
from scratch, a small RoBERTa freshly initialised (sizes ``model.kwargs``) over the
byte-level ``tokenizer.json`` written in the workdir; with ``model.pretrained``, a
Hugging Face RoBERTa directory (its weights and ``tokenizer.json``). Sequences are
truncated to ``data.max_len`` tokens, the count reported. Selection metric: dev macro-F1.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aux_jax.aang import objectives, space as space_lib, step as step_lib, weights
from aux_jax.aang.attention import padding_mask
from aux_jax.aang.data import load_jsonl_dir, macro_f1
from aux_jax.aang.model import AangNet, fresh_net, pretrained_net
from aux_jax.models.hf_tokenizer import HFTokenizer, write_byte_level
from aux_jax.train import nonfinite

METHODS = ("aang", "static_mt", "tapt", "stl")
PyTree = Any


class Experiment(NamedTuple):
  """The `aux_jax.train.loop.Experiment` protocol, plus the parts it is built from."""

  name: str
  select: str
  init: Callable[[], step_lib.AangState]
  lower_step: Callable
  upper_step: Optional[Callable]
  upper_every: int
  model: Callable[[step_lib.AangState], dict]
  evaluate: Callable[[dict, str], dict]
  counters: Callable[[step_lib.AangState], dict]
  info: dict
  finish: Optional[Callable[[str, list, dict], None]]
  init_from: Callable
  mesh: Any
  net: AangNet
  space: space_lib.SearchSpace
  hyper: step_lib.Hyper
  data: step_lib.Data


def build_net(config: ml_collections.ConfigDict, num_classes: int,
              workdir: Optional[str] = None) -> tuple[AangNet, HFTokenizer, int]:
  """``(net, tokenizer, max_len)`` of ``config.model``: the same RoBERTa module, fresh or
  loaded (module docstring).

  From scratch the byte-level ``tokenizer.json`` is written to ``workdir`` (kept if
  present) and read back, as a checkpoint's is; without a workdir, to a temporary
  directory.
  """
  m = config.model
  max_len = int(config.data.max_len)
  if m.get("pretrained", ""):
    from aux_jax.models.roberta import load_pretrained  # pylint: disable=g-import-not-at-top
    probe = load_pretrained(m.pretrained, num_classes=num_classes, dtype=m.dtype)
    net = pretrained_net(probe._replace(max_len=min(max_len, probe.max_len)), num_classes,
                         m.classifier_dropout, m.tie_lm_decoders)
    return net, probe.tokenizer, net.max_len
  if workdir is None:
    import tempfile  # pylint: disable=g-import-not-at-top
    with tempfile.TemporaryDirectory() as tmp:
      tok = HFTokenizer.from_file(write_byte_level(os.path.join(tmp, "tokenizer.json")))
  else:
    tok = HFTokenizer.from_file(write_byte_level(os.path.join(workdir, "tokenizer.json")))
  k = m.kwargs
  net = fresh_net(tok, max_len, num_classes, width=k.width, depth=k.depth,
                  num_heads=k.num_heads, mlp_dim=k.mlp_dim, dropout=k.dropout,
                  dtype=m.get("dtype", "float32"), classifier_dropout=m.classifier_dropout,
                  tie_lm_decoders=m.tie_lm_decoders,
                  kernel_init=k.get("kernel_init", "normal"))
  return net, tok, max_len


def hyper_from_config(config: ml_collections.ConfigDict) -> step_lib.Hyper:
  a, d = config.aang, config.data
  static = config.method.name in ("static_mt", "tapt")
  return step_lib.Hyper(
      num_sampled=1 if config.method.name == "tapt" else int(a.num_sampled),
      batch_size=int(d.batch_size), aux_batch_size=int(d.aux_batch_size),
      clip_norm=float(a.clip_norm), use_all=bool(a.use_all),
      aux_lr=0.0 if static else float(a.aux_lr),
      balance_lr=0.0 if static else float(a.balance_lr),
      meta_every=int(a.meta_every), rf_keep_prob=float(a.rf_keep_prob),
      copy_fix=bool(a.copy_fix), dev_batch_size=int(d.dev_batch_size),
      dev_head_lr=float(a.dev_head.lr), dev_head_wd=float(a.dev_head.weight_decay),
      dev_head_steps=int(a.dev_head.steps), dev_head_tol=float(a.dev_head.tol))


def axis_history(records: list, space: space_lib.SearchSpace, use_all: bool) -> list:
  """Per-axis weights (`weights.axis_weights`) of the logits logged in ``records``,
  after a step-0 record of the all-zero start."""
  factors = jnp.asarray(space.table().factors)
  zero = weights.init_logits(space.shape, len(space))
  rows = [(0, zero, [0.5, 0.5])]
  for r in records:
    if "w_all" in r:
      lg = weights.FactoredLogits(*(jnp.asarray(r[f], jnp.float32)
                                    for f in weights.FactoredLogits._fields))
      rows.append((r["step"], lg, r["balance"]))
  out = []
  for s, lg, bal in rows:
    marg, soft = weights.axis_weights(lg, factors, use_all)
    as_dict = lambda arrs: {a: np.asarray(v).tolist()
                            for a, v in zip(space_lib.AXES, arrs)}
    out.append({"step": s, "marginal": as_dict(marg), "factor_softmax": as_dict(soft),
                "balance": list(bal)})
  return out


def experiment_from_config(config: ml_collections.ConfigDict,
                           workdir: Optional[str] = None) -> Experiment:
  """The AANG experiment of ``config`` (module docstring), with its data loaded;
  ``workdir`` receives the from-scratch ``tokenizer.json``.

  Raises:
    ValueError: no ``data_dir``, an unknown method or space.
  """
  method = config.method.name
  if method not in METHODS:
    raise ValueError(f"unknown AANG method {method!r}; known: {', '.join(METHODS)}")
  if not config.get("data_dir", None):
    raise ValueError("set config.data_dir (--config.data_dir) to a directory with "
                     "train/dev/test.jsonl")
  task = load_jsonl_dir(config.data_dir)
  net, tokenizer, max_len = build_net(config, task.num_classes, workdir)
  spec = objectives.token_spec(tokenizer, float(config.aang.mask_rate))
  encoded, truncated = {}, {}
  for split in ("train", "dev", "test"):
    encoded[split], truncated[split] = tokenizer.encode_batch(
        getattr(task, split).texts, max_len, return_num_truncated=True)
  if any(truncated.values()):
    print(f"[aang] texts truncated to {max_len} tokens: {truncated}")
  data = step_lib.Data(jnp.asarray(encoded["train"]), jnp.asarray(task.train.labels),
                       jnp.asarray(encoded["dev"]), jnp.asarray(task.dev.labels))
  space = space_lib.get_space("tapt" if method == "tapt" else config.aang.space,
                              bool(config.aang.get("drop_identity_denoise", False)))
  hyper = hyper_from_config(config)
  num_steps = int(config.optim.num_steps)
  tx = step_lib.make_optimizer(config.optim, num_steps)
  k_init, k_run = jax.random.split(jax.random.key(int(config.seed)))
  table = space.table()
  is_lm = table.output == space_lib.OUTPUTS.index("denoise")
  n_lm, n_sup = (0, 0) if method == "stl" else (int(is_lm.sum()), int((~is_lm).sum()))
  learn = method == "aang" and (hyper.aux_lr > 0 or hyper.balance_lr > 0)

  @jax.jit
  def init() -> step_lib.AangState:
    params = net.init(k_init, n_lm, n_sup)
    logits = weights.init_logits(space.shape, len(space))
    return step_lib.AangState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
        logits=logits, beta=jnp.zeros((2,), jnp.float32),
        logit_grads=jax.tree.map(jnp.zeros_like, logits),
        beta_grad=jnp.zeros((2,), jnp.float32), guard=nonfinite.init())

  if method == "stl":
    raw_step = step_lib.make_stl_step(net, hyper, spec, tx, k_run)
  else:
    raw_step = step_lib.make_aang_step(net, hyper, space, spec, tx, k_run)

  def logged(state, metrics):
    metrics = dict(metrics)
    if learn:  # the logits and balance, for the weights plot
      metrics.update(state.logits._asdict())
      metrics["balance"] = weights.balance_weights(state.beta)
    return metrics

  def lower_raw(state, data):
    new, metrics = raw_step(state, data)
    return new, logged(state, metrics)

  # A non-finite loss or update is not applied, and counted (train.on_nonfinite).
  limit = nonfinite.limit_from_config(config)
  lower_jit = jax.jit(nonfinite.guarded(lower_raw, "lower", limit))
  upper_jit = jax.jit(nonfinite.guarded(step_lib.make_meta_apply(hyper), "upper", limit))

  @jax.jit
  def predict(model, tokens):
    states = net.encode(model["encoder"], tokens, padding_mask(tokens != spec.pad_id))
    return jnp.argmax(net.classify(model["primary_head"], states), -1)

  eval_bs = int(config.data.eval_batch_size)

  def evaluate(model: dict, split: str) -> dict:
    tokens = encoded[split]
    labels = getattr(task, split).labels
    n = tokens.shape[0]
    pad = (-n) % eval_bs
    padded = np.concatenate([tokens, np.repeat(tokens[:1], pad, 0)]) if pad else tokens
    preds = np.concatenate([np.asarray(predict(model, padded[i:i + eval_bs]))
                            for i in range(0, padded.shape[0], eval_bs)])[:n]
    return {f"{split}_macro_f1": macro_f1(labels, preds, task.num_classes),
            f"{split}_accuracy": float(np.mean(preds == labels))}

  def init_from(state, model, summary):
    del summary
    params = dict(state.params)
    for k in ("encoder", "primary_head"):
      src = jax.tree.map(jnp.asarray, model[k])
      if jax.tree.map(jnp.shape, src) != jax.tree.map(jnp.shape, params[k]):
        raise ValueError(f"train.init_from: its {k} differs from this model's")
      params[k] = src
    return state._replace(params=params, opt_state=tx.init(params))

  def finish(workdir: str, records: list, summary: dict) -> None:
    del summary
    if not learn:
      return
    from aux_jax.aang.plots import axis_weights_plot  # pylint: disable=g-import-not-at-top
    axis_weights_plot(axis_history(records, space, hyper.use_all),
                      dict(zip(space_lib.AXES, map(list, space.axes))),
                      os.path.join(workdir, "aang_weights.png"),
                      title=f"AANG objective weights per axis (seed {config.seed})")

  info = {"task_names": ["primary"], "label_names": list(task.label_names),
          "objective_names": space.names() if method != "stl" else [],
          "max_len": max_len, "num_truncated": truncated,
          "model": config.model.get("pretrained", "") or "roberta (from scratch)"}
  return Experiment(
      name=method, select="macro_f1", init=init,
      lower_step=lambda state: lower_jit(state, data),
      upper_step=upper_jit if learn else None, upper_every=hyper.meta_every,
      model=lambda state: {"encoder": state.params["encoder"],
                           "primary_head": state.params["primary_head"]},
      evaluate=evaluate, counters=lambda state: {}, info=info, finish=finish,
      init_from=init_from, mesh=None, net=net, space=space, hyper=hyper, data=data)
