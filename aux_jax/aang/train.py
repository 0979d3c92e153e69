"""AANG training: a pure jitted step, baselines, and a small loop returning metrics.

One AANG step (Dery et al., ICLR 2023), all inside ``jax.jit`` (``lax.scan`` over steps):

1. sample a task batch (x, y) (and an in-domain batch if the space reads one) and K
   distinct objectives S from the C valid ones (`weights.sample_objectives`);
2. per-objective losses and gradients of the primary objective
   ``(task, none, bidirectional, supervised)`` and of each c in S, one ``vmap`` of
   ``value_and_grad``;
3. clip each objective's *body* gradient to norm ``clip_norm`` (10) and combine
   ``g = a_prim g_prim + a_aux sum_{c in S} w_c g_c`` with ``w = lambda_aux softmax(z_S)``
   and ``(a_prim, a_aux) = softmax(beta)``; an optax AdamW step on all params;
4. every ``meta_every`` steps (``lax.cond``): fit the dev head for ``dev_fit_steps`` Adam
   steps on frozen body features of training examples, take ``g_dev``, the body gradient
   of the dev-batch loss through it, and update the factored logits by
   ``d z_c = -cos(g_dev, g_c)`` (plain SGD, `weights.meta_update`) and the balance by
   ``d beta = (-cos(g_dev, g_prim), -cos(g_dev, g_aux))``.

Baselines share the loop: ``supervised`` (primary loss only) and ``tapt`` (primary loss +
``lambda_aux`` times the BERT-style denoise loss on the task's texts, fixed weights).

`run_aang` evaluates dev macro-F1 every ``eval_every`` steps, keeps the parameters of the
best dev score, stops after ``patience`` evaluations without improvement, and scores the
test split once, with the dev-selected parameters. Test never influences selection.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aux_jax.aang import attention, objectives, space as space_lib, weights
from aux_jax.aang.data import TextClassificationData, macro_f1
from aux_jax.aang.objectives import TokenSpec
from aux_jax.aang.tokenizer import ByteTokenizer
from aux_jax.aang.transformer import AangModel, EncoderConfig

METHODS = ("aang", "supervised", "tapt")
_T, _R, _O = space_lib.TRANSFORMS, space_lib.REPRESENTATIONS, space_lib.OUTPUTS


@dataclasses.dataclass(frozen=True)
class AangConfig:
  """Everything `run_aang` needs.

  Attributes:
    method: "aang", "supervised" or "tapt".
    space: search-space name (`space.get_space`); used by "aang".
    drop_identity_denoise: drop ``(·, none, bidirectional, denoise)`` from the space.
    max_len, width, depth, num_heads, mlp_dim, dropout, tied_lm_head: the model.
    batch_size: task examples per step.  dev_batch_size: dev examples per meta-update
      (and training examples used to fit the dev head).
    num_steps: step budget (rounded up to a multiple of ``eval_every``).
    learning_rate, weight_decay, warmup_steps, grad_clip: AdamW with linear warmup and a
      global-norm clip of the combined gradient.
    mask_rate: share of tokens a transform selects (15%).
    num_sampled: K objectives per step.  lambda_aux: scale of the auxiliary weights
      (for "tapt": the weight of the denoise loss).
    meta_lr: SGD step on the logits.  meta_every: steps between meta-updates.
    clip_norm: per-objective body-gradient clip (10 in the original).
    use_all: include the per-objective logit W_all.  learn_balance: meta-learn beta.
    sample_by_logits: sample S by softmax(z / sample_temperature) instead of uniformly.
    dev_head_lr, dev_fit_steps: the dev head's Adam fit at each meta-update.
    eval_every: steps between dev evaluations.  patience: evaluations without
      improvement before stopping.  eval_batch_size: batch for evaluation.
  """

  method: str = "aang"
  space: str = "citation.supervised"
  drop_identity_denoise: bool = False
  max_len: int = 128
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  dropout: float = 0.1
  tied_lm_head: bool = True
  batch_size: int = 16
  dev_batch_size: int = 32
  num_steps: int = 600
  learning_rate: float = 1e-3
  weight_decay: float = 0.01
  warmup_steps: int = 30
  grad_clip: float = 1.0
  mask_rate: float = 0.15
  num_sampled: int = 4
  lambda_aux: float = 1.0
  meta_lr: float = 0.5
  meta_every: int = 3
  clip_norm: float = 10.0
  use_all: bool = True
  learn_balance: bool = True
  sample_by_logits: bool = False
  sample_temperature: float = 1.0
  dev_head_lr: float = 1e-3
  dev_fit_steps: int = 5
  eval_every: int = 30
  patience: int = 10
  eval_batch_size: int = 64

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
    for f in ("batch_size", "dev_batch_size", "num_steps", "num_sampled", "meta_every",
              "eval_every", "patience", "eval_batch_size", "max_len"):
      if getattr(self, f) < 1:
        raise ValueError(f"AangConfig.{f} must be >= 1, got {getattr(self, f)}.")
    if self.dev_fit_steps < 0:
      raise ValueError(f"dev_fit_steps must be >= 0, got {self.dev_fit_steps}.")

  @classmethod
  def from_mapping(cls, m: Mapping[str, Any] | Any) -> "AangConfig":
    """From an `AangConfig`, a dict or an ``ml_collections.ConfigDict``."""
    if isinstance(m, cls):
      return m
    d = dict(m.to_dict() if hasattr(m, "to_dict") else m)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"Unknown AangConfig field(s) {unknown}; known: {sorted(known)}.")
    return cls(**d)


class AangState(NamedTuple):
  """Training state (a pytree).

  Attributes:
    step: i32[].  params: ``{"encoder", "lm_head", "cls_head"}``.  opt_state: AdamW.
    dev_head: dev classifier-head params.  dev_opt_state: its Adam state.
    logits: `weights.FactoredLogits`.  beta: f32[2] primary/auxiliary balance logits.
    key: PRNG key.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  dev_head: Any
  dev_opt_state: Any
  logits: weights.FactoredLogits
  beta: jax.Array
  key: jax.Array


class DeviceData(NamedTuple):
  """Tokenised splits on device: i32[N, L] tokens, i32[N] labels."""

  train_tokens: jax.Array
  train_labels: jax.Array
  in_domain_tokens: jax.Array
  dev_tokens: jax.Array
  dev_labels: jax.Array


def token_spec(tok: ByteTokenizer, rate: float = 0.15) -> TokenSpec:
  """`objectives.TokenSpec` of a tokenizer."""
  return TokenSpec(tok.pad_id, tok.mask_id, tok.first_regular_id, tok.vocab_size, rate)


def make_optimizer(config: AangConfig) -> optax.GradientTransformation:
  """AdamW with linear warmup and global-norm clipping."""
  lr = optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1))
  return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(lr, weight_decay=config.weight_decay))


def _dev_optimizer(config: AangConfig) -> optax.GradientTransformation:
  return optax.adam(config.dev_head_lr)


def init_state(model: AangModel, config: AangConfig, space: space_lib.SearchSpace,
               key: jax.Array) -> AangState:
  """Initial `AangState`: fresh model, dev head, zero logits and balance."""
  k_model, k_dev, k_run = jax.random.split(key, 3)
  params = model.init(k_model)
  dev_head = model.cls_head.init(k_dev, jnp.zeros((1, config.width)))["params"]
  return AangState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=make_optimizer(config).init(params),
      dev_head=dev_head,
      dev_opt_state=_dev_optimizer(config).init(dev_head),
      logits=weights.init_logits(space.shape, len(space)),
      beta=jnp.zeros((2,), jnp.float32),
      key=k_run,
  )


def _sample_batch(key, tokens, labels, size):
  idx = jax.random.randint(key, (size,), 0, tokens.shape[0])
  return tokens[idx], labels[idx]


def _combine(grads, coeffs):
  """``sum_k coeffs[k] * grads[k]`` leafwise over a leading objective axis."""
  return jax.tree.map(lambda g: jnp.tensordot(coeffs, g, axes=1), grads)


def dev_gradient(model: AangModel, config: AangConfig, spec: TokenSpec, params,
                 dev_head, dev_opt_state, fit_tokens, fit_labels, dev_tokens, dev_labels):
  """Fits the dev head on frozen body features, then the dev loss's body gradient.

  Args:
    model, config, spec: static.
    params: model params (the body is ``params["encoder"]``).
    dev_head, dev_opt_state: dev-head params and Adam state (warm-started).
    fit_tokens, fit_labels: i32[B, L], i32[B], training examples to fit the head on.
    dev_tokens, dev_labels: i32[B', L], i32[B'], the dev batch.

  Returns:
    ``(g_dev, dev_head, dev_opt_state, dev_loss)``; g_dev is a pytree like the body.
  """
  tx = _dev_optimizer(config)
  fit_states = model.encode(params, fit_tokens,
                            attention.padding_mask(fit_tokens != spec.pad_id))
  fit_states = jax.lax.stop_gradient(fit_states[:, :1])

  def fit(carry, _):
    head, opt = carry
    g = jax.grad(lambda h: objectives.classification_loss(
        model.classify(h, fit_states), fit_labels))(head)
    upd, opt = tx.update(g, opt, head)
    return (optax.apply_updates(head, upd), opt), None

  (dev_head, dev_opt_state), _ = jax.lax.scan(
      fit, (dev_head, dev_opt_state), None, length=config.dev_fit_steps)
  dev_mask = attention.padding_mask(dev_tokens != spec.pad_id)

  def dev_loss(body):
    states = model.encode({"encoder": body}, dev_tokens, dev_mask)
    return objectives.classification_loss(model.classify(dev_head, states), dev_labels)

  loss, g_dev = jax.value_and_grad(dev_loss)(params["encoder"])
  return g_dev, dev_head, dev_opt_state, loss


def meta_step(model: AangModel, config: AangConfig, spec: TokenSpec,
              factors: jax.Array, state: AangState, body_grads, sampled: jax.Array,
              aux_w: jax.Array, clip: jax.Array, fit_batch, dev_batch):
  """AANG's meta-update of the factored logits and the balance (module docstring, 4).

  Args:
    model, config, spec: static.
    factors: i32[C, 4] factor indices of the valid objectives.
    state: the `AangState` before the step (params at which ``body_grads`` were taken).
    body_grads: body-gradient pytree with a leading axis of K+1: the primary objective
      first, then the sampled objectives (unclipped).
    sampled: i32[K] sampled objective indices.
    aux_w: f32[K] their weights ``lambda_aux softmax(z_S)``.
    clip: f32[K+1] per-objective clip factors (`weights.clip_factor`).
    fit_batch: ``(tokens, labels)`` training examples to fit the dev head on.
    dev_batch: ``(tokens, labels)`` dev examples for ``g_dev``.

  Returns:
    ``(logits, beta, dev_head, dev_opt_state, cos, cos_aux, dev_loss)``: new logits and
    balance, the refitted dev head and its state, f32[K+1] cosines of ``g_dev`` with each
    objective's gradient (primary first), f32[] cosine with the combined auxiliary
    gradient, and the dev loss.
  """
  g_dev, dev_head, dev_opt, dev_loss = dev_gradient(
      model, config, spec, state.params, state.dev_head, state.dev_opt_state,
      *fit_batch, *dev_batch)
  cos = jax.vmap(lambda g: weights.tree_cosine(g_dev, g))(body_grads)
  # The auxiliary part of the body update (without the a_aux scale).
  g_aux = _combine(jax.tree.map(lambda g: g[1:], body_grads), aux_w * clip[1:])
  cos_aux = weights.tree_cosine(g_dev, g_aux)
  logits = weights.meta_update(state.logits, factors, sampled, cos[1:], config.meta_lr,
                               config.use_all)
  beta = state.beta - config.meta_lr * jnp.stack([-cos[0], -cos_aux])
  beta = beta if config.learn_balance else state.beta
  return logits, beta, dev_head, dev_opt, cos, cos_aux, dev_loss


def make_aang_step(model: AangModel, config: AangConfig, space: space_lib.SearchSpace,
                   spec: TokenSpec) -> Callable[[AangState, DeviceData],
                                                tuple[AangState, dict]]:
  """The AANG step ``(state, data) -> (state, metrics)`` (module docstring); pure.

  Args:
    model: the `AangModel`.
    config: the `AangConfig`.
    space: the search space (its table is baked into the step as constants).
    spec: token conventions.

  Returns:
    The step function (jit it, or ``lax.scan`` it).
  """
  table = space.table()
  num_obj = len(table.factors)
  k = min(config.num_sampled, num_obj)
  factors = jnp.asarray(table.factors)
  t_tab, r_tab, o_tab, i_tab = (jnp.asarray(a) for a in (
      table.transform, table.representation, table.output, table.input_index))
  prim = jnp.array([_T.index("none"), _R.index("bidirectional"), _O.index("supervised")],
                   jnp.int32)
  tx = make_optimizer(config)

  def loss_fn(params, key, tokens, labels, t, r, o):
    return objectives.objective_loss(model, params, key, tokens, labels, t, r, o, spec)

  value_and_grad = jax.value_and_grad(loss_fn)

  def per_objective(params, keys, tokens, labels, t, r, o):
    # lax.map, not vmap: sequential objectives run faster on CPU than a vmapped
    # backward pass (batched small matmuls), and compile the same.
    return jax.lax.map(
        lambda a: value_and_grad(params, a[0], a[1], labels, a[2], a[3], a[4]),
        (keys, tokens, t, r, o))

  def step(state: AangState, data: DeviceData):
    (key, k_task, k_dom, k_samp, k_obj, k_fit, k_dev) = jax.random.split(state.key, 7)
    tokens, labels = _sample_batch(k_task, data.train_tokens, data.train_labels,
                                   config.batch_size)
    dom_idx = jax.random.randint(k_dom, (config.batch_size,), 0,
                                 data.in_domain_tokens.shape[0])
    sources = {"task": tokens, "in_domain": data.in_domain_tokens[dom_idx]}
    inputs = jnp.stack([sources[name] for name in space.inputs])

    z = weights.objective_logits(state.logits, factors, config.use_all)
    sampled = weights.sample_objectives(
        k_samp, num_obj, k, z if config.sample_by_logits else None,
        config.sample_temperature)
    codes = [jnp.concatenate([prim[j:j + 1], tab[sampled]])
             for j, tab in enumerate((t_tab, r_tab, o_tab))]
    # Objective 0 is the primary task on the task batch; the others read their input.
    obj_tokens = jnp.concatenate([tokens[None], inputs[i_tab[sampled]]])
    losses, grads = per_objective(state.params, jax.random.split(k_obj, k + 1),
                                  obj_tokens, labels, *codes)

    body_norms = jax.vmap(optax.tree_utils.tree_norm)(grads["encoder"])
    clip = weights.clip_factor(body_norms, config.clip_norm)
    w = weights.aux_weights(state.logits, factors, sampled, config.lambda_aux,
                            config.use_all)
    alpha = weights.balance_weights(state.beta)
    coeffs = jnp.concatenate([alpha[:1], alpha[1] * w])
    combined = {name: _combine(g, coeffs * clip if name == "encoder" else coeffs)
                for name, g in grads.items()}
    updates, opt_state = tx.update(combined, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    def meta(_):
      fit = _sample_batch(k_fit, data.train_tokens, data.train_labels,
                          config.dev_batch_size)
      dev = _sample_batch(k_dev, data.dev_tokens, data.dev_labels, config.dev_batch_size)
      return meta_step(model, config, spec, factors, state, grads["encoder"], sampled, w,
                       clip, fit, dev)

    def no_meta(_):
      return (state.logits, state.beta, state.dev_head, state.dev_opt_state,
              jnp.zeros((k + 1,)), jnp.zeros(()), jnp.zeros(()))

    do_meta = state.step % config.meta_every == 0
    logits, beta, dev_head, dev_opt, cos, cos_aux, dev_loss = jax.lax.cond(
        do_meta, meta, no_meta, None)
    new_state = AangState(state.step + 1, params, opt_state, dev_head, dev_opt,
                          logits, beta, key)
    metrics = {
        "loss_primary": losses[0],
        "loss_aux": jnp.sum(w * losses[1:]),
        "sampled": sampled,
        "aux_weights": w,
        "balance": alpha,
        "cos_primary": cos[0],
        "cos_aux": cos_aux,
        "cosines": cos[1:],
        "body_grad_norms": body_norms,
        "did_meta": do_meta,
        "dev_loss": dev_loss,
    }
    return new_state, metrics

  return step


def make_fixed_step(model: AangModel, config: AangConfig, spec: TokenSpec,
                    aux: tuple[tuple[str, str, str], ...] = ()):
  """A fixed-weight step: ``loss = l_prim + lambda_aux * mean_c l_c`` over ``aux``.

  Args:
    model, config, spec: as in `make_aang_step`.
    aux: ``(T, R, O)`` names of auxiliary objectives on the task's texts; ``()`` is the
      supervised baseline, ``(("bert", "bidirectional", "denoise"),)`` the TAPT-like one.

  Returns:
    ``step(state, data) -> (state, metrics)``; logits, beta and dev head are unchanged.
  """
  tx = make_optimizer(config)
  codes = [(_T.index(t), _R.index(r), _O.index(o)) for t, r, o in aux]
  prim = (_T.index("none"), _R.index("bidirectional"), _O.index("supervised"))

  def loss_fn(params, key, tokens, labels):
    keys = jax.random.split(key, len(codes) + 1)
    l_prim = objectives.objective_loss(model, params, keys[0], tokens, labels, *prim, spec)
    l_aux = [objectives.objective_loss(model, params, kk, tokens, labels, *c, spec)
             for kk, c in zip(keys[1:], codes)]
    l_aux = jnp.mean(jnp.stack(l_aux)) if l_aux else jnp.zeros(())
    return l_prim + config.lambda_aux * l_aux, (l_prim, l_aux)

  def step(state: AangState, data: DeviceData):
    key, k_task, k_loss = jax.random.split(state.key, 3)
    tokens, labels = _sample_batch(k_task, data.train_tokens, data.train_labels,
                                   config.batch_size)
    (_, (l_prim, l_aux)), g = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, k_loss, tokens, labels)
    updates, opt_state = tx.update(g, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(step=state.step + 1, params=params, opt_state=opt_state,
                          key=key), {"loss_primary": l_prim, "loss_aux": l_aux}

  return step


def make_predict(model: AangModel, spec: TokenSpec):
  """``predict(params, tokens i32[B, L]) -> i32[B]`` class ids (jitted, no dropout)."""

  @jax.jit
  def predict(params, tokens):
    states = model.encode(params, tokens, attention.padding_mask(tokens != spec.pad_id))
    return jnp.argmax(model.classify(params["cls_head"], states), -1)

  return predict


def evaluate_f1(predict, params, tokens: np.ndarray, labels: np.ndarray,
                batch_size: int, num_classes: int) -> float:
  """Macro-F1 of ``predict`` over a split, in fixed-size (padded) batches."""
  n = tokens.shape[0]
  pad = (-n) % batch_size
  padded = np.concatenate([tokens, np.repeat(tokens[:1], pad, 0)]) if pad else tokens
  preds = [np.asarray(predict(params, padded[i:i + batch_size]))
           for i in range(0, padded.shape[0], batch_size)]
  return macro_f1(labels, np.concatenate(preds)[:n], num_classes)


def axis_weight_record(state: AangState, factors: jax.Array, use_all: bool) -> dict:
  """The learned objective weights per axis at ``state`` (host lists, for JSON).

  Returns:
    ``{"step", "marginal": {axis: [..]}, "factor_softmax": {axis: [..]}, "balance":
    [a_prim, a_aux]}``, axes named as in `space.AXES`; see `weights.axis_weights`.
    Each axis's list sums to 1.
  """
  marginals, factor = weights.axis_weights(state.logits, factors, use_all)
  as_dict = lambda arrs: {a: np.asarray(v).tolist() for a, v in zip(space_lib.AXES, arrs)}
  return {"step": int(state.step), "marginal": as_dict(marginals),
          "factor_softmax": as_dict(factor),
          "balance": np.asarray(weights.balance_weights(state.beta)).tolist()}


def run_aang(config: AangConfig | Mapping[str, Any], data: TextClassificationData,
             seed: int = 0, log_fn: Callable[[str], None] | None = None) -> dict:
  """Trains with ``config.method`` and returns metrics (see module docstring).

  Args:
    config: an `AangConfig`, dict or ``ml_collections.ConfigDict`` with its fields.
    data: the task (texts are tokenised here with the byte tokenizer).
    seed: PRNG seed (model init, batches, objectives).
    log_fn: optional callback receiving one progress line per evaluation.

  Returns:
    dict with ``best_dev_f1``, ``test_f1`` (of the dev-selected params), ``best_step``,
    ``steps_run``, ``dev_f1_history`` [(step, f1)], ``loss_history`` [(step, primary,
    aux)], ``logits_history`` [{"step", "w_input", ..., "objective_logits"}] (AANG),
    ``axis_weights_history`` (AANG; step 0 first, then every evaluation; see
    `axis_weight_record`), ``axis_names`` {axis: [value names]} (AANG),
    ``objective_names``, ``final_objective_weights`` (softmax of z over all objectives),
    ``balance`` (a_prim, a_aux), ``seconds``, ``best_params`` (numpy pytree).
  """
  config = AangConfig.from_mapping(config)
  log = log_fn or (lambda s: None)
  tok = ByteTokenizer()
  spec = token_spec(tok, config.mask_rate)
  space = (space_lib.get_space(config.space, config.drop_identity_denoise)
           if config.method == "aang" else space_lib.get_space("tapt"))  # tapt: unused
  if "in_domain" in space.inputs and not data.in_domain:
    raise ValueError(f"Space {config.space!r} reads in-domain text but data.in_domain "
                     "is empty.")
  enc_cfg = EncoderConfig(tok.vocab_size, config.max_len, config.width, config.depth,
                          config.num_heads, config.mlp_dim, config.dropout)
  model = AangModel(enc_cfg, data.num_classes, tied=config.tied_lm_head)

  enc = lambda texts: tok.encode_batch(list(texts), config.max_len)
  train_tok, dev_tok, test_tok = enc(data.train.texts), enc(data.dev.texts), enc(
      data.test.texts)
  dom_tok = enc(data.in_domain) if data.in_domain else train_tok
  dev_data = DeviceData(jnp.asarray(train_tok), jnp.asarray(data.train.labels),
                        jnp.asarray(dom_tok), jnp.asarray(dev_tok),
                        jnp.asarray(data.dev.labels))

  state = init_state(model, config, space, jax.random.PRNGKey(seed))
  if config.method == "aang":
    step = make_aang_step(model, config, space, spec)
  elif config.method == "tapt":
    step = make_fixed_step(model, config, spec, (("bert", "bidirectional", "denoise"),))
  else:
    step = make_fixed_step(model, config, spec)

  @jax.jit
  def run_chunk(state, data):
    return jax.lax.scan(lambda s, _: step(s, data), state, None, length=config.eval_every)

  predict = make_predict(model, spec)
  table = space.table()
  factors = jnp.asarray(table.factors)
  history, losses, logits_hist = [], [], []
  axis_hist = [axis_weight_record(state, factors, config.use_all)]
  best = (-1.0, 0, None)
  bad, t0 = 0, time.time()
  num_chunks = math.ceil(config.num_steps / config.eval_every)
  for _ in range(num_chunks):
    state, m = run_chunk(state, dev_data)
    step_now = int(state.step)
    f1 = evaluate_f1(predict, state.params, dev_tok, data.dev.labels,
                     config.eval_batch_size, data.num_classes)
    history.append((step_now, f1))
    losses.append((step_now, float(m["loss_primary"].mean()), float(m["loss_aux"].mean())))
    z = weights.objective_logits(state.logits, factors, config.use_all)
    logits_hist.append({"step": step_now, "objective_logits": np.asarray(z).tolist(),
                        **{f: np.asarray(v).tolist()
                           for f, v in state.logits._asdict().items()}})
    axis_hist.append(axis_weight_record(state, factors, config.use_all))
    if f1 > best[0]:
      best, bad = (f1, step_now, jax.device_get(state.params)), 0
    else:
      bad += 1
    log(f"[{config.method}] step {step_now}: loss_primary {losses[-1][1]:.4f} "
        f"loss_aux {losses[-1][2]:.4f} dev_macro_f1 {f1:.4f} best {best[0]:.4f}@{best[1]}")
    if bad >= config.patience:
      log(f"[{config.method}] early stop: {bad} evaluations without dev improvement")
      break

  test_f1 = evaluate_f1(predict, best[2], test_tok, data.test.labels,
                        config.eval_batch_size, data.num_classes)
  z = weights.objective_logits(state.logits, factors, config.use_all)
  is_aang = config.method == "aang"
  return {
      "method": config.method,
      "best_dev_f1": best[0],
      "test_f1": test_f1,
      "best_step": best[1],
      "steps_run": int(state.step),
      "dev_f1_history": history,
      "loss_history": losses,
      "logits_history": logits_hist if is_aang else [],
      "axis_weights_history": axis_hist if is_aang else [],
      "axis_names": dict(zip(space_lib.AXES, map(list, space.axes))) if is_aang else {},
      "objective_names": space.names() if is_aang else [],
      "final_objective_weights": np.asarray(jax.nn.softmax(z)).tolist() if is_aang else [],
      "balance": np.asarray(weights.balance_weights(state.beta)).tolist(),
      "seconds": time.time() - t0,
      "best_params": best[2],
  }
