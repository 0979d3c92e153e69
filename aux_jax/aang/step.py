"""AANG's pure training steps (Dery et al., ICLR 2023): state, optimizer, dev gradient.

One AANG step (`make_aang_step`; ldery/Automating-Auxiliary-Learning @ f876fe2,
``scripts/autoaux.py:320-425``, ``AutoSearchSpace/modelling.py:625-770``):

1. the primary batch (B_p training examples, without replacement) and K distinct
   objectives S sampled uniformly from the C valid ones;
2. the auxiliary batch split (`weights.batch_split`): every (R, I) group draws its rows
   with replacement from its input, every (R, I, T) group takes a random subset of
   them; objectives differing only in O share their group's exact batch (transform,
   attention mask and dropout);
3. per objective, the loss on its rows through its own head (`objectives`) and its
   gradient (body + its head); the primary loss through the primary head;
4. the dev gradient ``g_dev`` (`dev_gradient`: a fresh dev head fit on frozen features of
   training examples, then the body gradient of its loss on a dev batch) and the
   cosines ``cos(g_dev, g_c)`` on the body, accumulated into the logit gradients
   (`weights` module docstring);
5. each objective's body gradient clipped to norm 10, everything combined with
   ``a_prim`` and ``s_c`` (`weights.loss_scales`), one step of two AdamW groups (body;
   heads), each clipped to global norm 1.

Every ``meta_every`` (3) steps `make_meta_apply` applies the mean accumulated logit
gradients (the loop's upper step). With ``aux_lr = balance_lr = 0`` this is the static
multitask baseline; the cosines have no effect then and are not computed.
`make_stl_step` is the primary task alone (the ``stl`` baseline and the final
fine-tuning stage).

Randomness: every key is ``fold_in(key, step)``; the state holds no key, so a resumed
run repeats the uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from aux_jax.aang import objectives, weights
from aux_jax.aang.attention import padding_mask
from aux_jax.aang.model import PRIMARY_ACTIVATION
from aux_jax.aang.objectives import TokenSpec
from aux_jax.aang.space import OUTPUTS, SearchSpace

PyTree = Any


class AangState(NamedTuple):
  """The training state (a pytree).

  Attributes:
    step: i32[].
    params: `model.AangNet.init`'s tree.
    opt_state: the two AdamW groups' state.
    logits: `weights.FactoredLogits`.
    beta: f32[2], primary/auxiliary balance logits.
    logit_grads: `weights.FactoredLogits`, upstream summed since the last meta-update.
    beta_grad: f32[2], the balance's.
    guard: `aux_jax.train.nonfinite.Guard`, non-finite updates skipped.
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  logits: weights.FactoredLogits
  beta: jax.Array
  logit_grads: weights.FactoredLogits
  beta_grad: jax.Array
  guard: Any


class Hyper(NamedTuple):
  """Static hyper-parameters of the steps (``config.aang`` and ``config.data``)."""

  num_sampled: int = 3          # K, nconf_samp
  batch_size: int = 16          # B_p, primary rows per step
  aux_batch_size: int = 16      # B, auxiliary rows per step
  clip_norm: float = 10.0       # per-objective body-gradient clip
  use_all: bool = True          # W_all in q
  aux_lr: float = 0.1           # SGD lr of W_I, W_T, W_R, W_O, W_all
  balance_lr: float = 0.1       # SGD lr of beta
  meta_every: int = 3           # steps averaged per meta-update
  rf_keep_prob: float = 0.6
  copy_fix: bool = True
  dev_batch_size: int = 32      # training rows to fit the dev head; dev rows for g_dev
  dev_head_lr: float = 1e-2
  dev_head_wd: float = 0.1
  dev_head_steps: int = 10
  dev_head_tol: float = 1e-3    # stop fitting when |Δloss| < tol


class Data(NamedTuple):
  """Tokenised splits on device: i32[N, L] tokens, i32[N] labels."""

  train_tokens: jax.Array
  train_labels: jax.Array
  dev_tokens: jax.Array
  dev_labels: jax.Array


def warmup_linear_decay(lr: float, num_steps: int, warmup_frac: float = 0.06,
                        warmup_max: int = 700) -> optax.Schedule:
  """Linear warmup for ``min(warmup_frac · num_steps, warmup_max)`` steps, then linear
  decay to 0 at ``num_steps`` (``scripts/autoaux.py:255-269``)."""
  warmup = max(int(min(warmup_frac * num_steps, warmup_max)), 1)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup),
       optax.linear_schedule(lr, 0.0, max(num_steps - warmup, 1))], [warmup])


def make_optimizer(optim, num_steps: int) -> optax.GradientTransformation:
  """Two AdamW groups (``scripts/autoaux.py:240-269``): the body (``optim.lr``,
  ``weight_decay`` on matrices only: no decay on biases and LayerNorm) and every head
  (``head_lr``, ``head_weight_decay`` on all), each clipped to its own global norm
  ``clip_norm``; betas ``(b1, b2)``, ``eps``; ``schedule`` ``warmup_linear`` or
  ``constant``."""

  def group(lr, wd, decay_mask):
    sched = (warmup_linear_decay(lr, num_steps, optim.warmup_frac, optim.warmup_max)
             if optim.schedule == "warmup_linear" else lr)
    if optim.schedule not in ("warmup_linear", "constant"):
      raise ValueError(f"optim.schedule must be 'warmup_linear' or 'constant' for AANG, "
                       f"got {optim.schedule!r}")
    parts = [optax.clip_by_global_norm(optim.clip_norm)] if optim.clip_norm else []
    return optax.chain(*parts, optax.adamw(sched, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                                           weight_decay=wd, mask=decay_mask))

  matrices = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)
  return optax.multi_transform(
      {"body": group(optim.lr, optim.weight_decay, matrices),
       "heads": group(optim.head_lr, optim.head_weight_decay, None)},
      lambda params: {k: jax.tree.map(lambda _: "body" if k == "encoder" else "heads", v)
                      for k, v in params.items()})


def _sample_rows(key, n, size):
  """``size`` distinct row indices of ``n`` (with replacement if ``n < size``)."""
  if n >= size:
    return jax.random.permutation(key, n)[:size]
  return jax.random.randint(key, (size,), 0, n)


def dev_gradient(net, hyper: Hyper, spec: TokenSpec, encoder, key, fit_tokens,
                 fit_labels, dev_tokens, dev_labels):
  """``g_dev``: a fresh dev head fit on frozen features, then the dev loss's body gradient.

  The original (``modelling.py:466-565``) creates a new classifier head every optimizer
  step, fits it with AdamW (lr 1e-2, wd 0.1, betas (0.9, 0.98)) for up to 10 iterations on
  32 training examples, the body frozen, stopping when the loss changes by less than
  1e-3; ``g_dev`` is the body gradient of that head's loss on 32 dev examples. Here the
  fit reads the ``<s>`` features computed once without dropout (the original recomputes
  the body with dropout at every iteration: a deliberate saving, see docs/fidelity.md).

  Args:
    net: the `model.AangNet`.  hyper, spec: static.
    encoder: the body's params.
    key: PRNG key (head init, dropout).
    fit_tokens, fit_labels: i32[B, L], i32[B] training examples.
    dev_tokens, dev_labels: i32[B', L], i32[B'] dev examples.

  Returns:
    ``(g_dev, dev_loss, fit_iterations)``.
  """
  k_init, k_fit, k_dev = jax.random.split(key, 3)
  feats = net.encode(encoder, fit_tokens, padding_mask(fit_tokens != spec.pad_id))
  feats = jax.lax.stop_gradient(feats[:, :1])
  head = net.init_classifier(k_init, PRIMARY_ACTIVATION)
  tx = optax.adamw(hyper.dev_head_lr, b1=0.9, b2=0.98, eps=1e-6,
                   weight_decay=hyper.dev_head_wd)

  def head_loss(h, k):
    return objectives.classification_loss(net.classify(h, feats, k), fit_labels)

  def fit(carry, k):
    h, opt, prev, done, iters = carry
    loss, g = jax.value_and_grad(head_loss)(h, k)
    upd, new_opt = tx.update(g, opt, h)
    new_h = optax.apply_updates(h, upd)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(done, b, a), new, old)
    h, opt = keep(new_h, h), keep(new_opt, opt)
    iters = iters + jnp.where(done, 0, 1)
    done = done | (jnp.abs(loss - prev) < hyper.dev_head_tol)
    return (h, opt, loss, done, iters), None

  init = (head, tx.init(head), jnp.float32(jnp.inf), jnp.array(False), jnp.int32(0))
  (head, _, _, _, iters), _ = jax.lax.scan(
      fit, init, jax.random.split(k_fit, hyper.dev_head_steps))
  dev_mask = padding_mask(dev_tokens != spec.pad_id)

  def dev_loss(body):
    states = net.encode(body, dev_tokens, dev_mask, k_dev)
    return objectives.classification_loss(net.classify(head, states), dev_labels)

  loss, g_dev = jax.value_and_grad(dev_loss)(encoder)
  return g_dev, loss, iters


def primary_loss(net, spec: TokenSpec, params, key, tokens, labels):
  """Mean CE of the primary head on a padded batch (dropout on)."""
  k_enc, k_cls = jax.random.split(key)
  states = net.encode(params["encoder"], tokens, padding_mask(tokens != spec.pad_id), k_enc)
  return objectives.classification_loss(
      net.classify(params["primary_head"], states, k_cls), labels)


def _gather(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def make_aang_step(net, hyper: Hyper, space: SearchSpace, spec: TokenSpec,
                   tx: optax.GradientTransformation, key: jax.Array
                   ) -> Callable[[AangState, Data], tuple[AangState, dict]]:
  """The AANG step ``(state, data) -> (state, metrics)`` (module docstring); pure.

  Args:
    net: the `model.AangNet`.
    hyper: `Hyper`.
    space: the search space (its table is baked in as constants).
    spec: token conventions.
    tx: `make_optimizer`'s optimizer.
    key: the run's base key; step s uses ``fold_in(key, s)``.
  """
  table = space.table()
  num_obj = len(table.factors)
  k_num = min(hyper.num_sampled, num_obj)
  factors = jnp.asarray(table.factors)
  t_tab, r_tab, o_tab = (jnp.asarray(a) for a in (
      table.transform, table.representation, table.output))
  is_lm = table.output == OUTPUTS.index("denoise")
  # Each objective's head: its rank among the objectives of its output type.
  head_index = jnp.asarray(
      [int(is_lm[:c].sum()) if is_lm[c] else int((~is_lm[:c]).sum())
       for c in range(num_obj)], jnp.int32)
  has_lm, has_sup = bool(is_lm.any()), bool((~is_lm).any())
  n_i, n_t, n_r = space.shape[:3]
  learn = hyper.aux_lr > 0 or hyper.balance_lr > 0
  ba = hyper.aux_batch_size

  def objective(encoder, lm_head, cls_head, k, tokens, labels, rows, t, r, o):
    return objectives.objective_loss(
        net, encoder, lm_head, cls_head, k, tokens, labels, rows, t, r, o, spec,
        has_denoise=has_lm, has_supervised=has_sup, rf_keep_prob=hyper.rf_keep_prob,
        copy_fix=hyper.copy_fix)

  obj_grad = jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True)

  def step(state: AangState, data: Data):
    skey = jax.random.fold_in(key, state.step)
    (k_prim, k_samp, k_rows, k_sub, k_group, k_dev, k_fit, k_devb) = jax.random.split(
        skey, 8)
    params = state.params
    n_train = data.train_tokens.shape[0]

    # 1. Primary batch and sampled objectives.
    idx = _sample_rows(k_prim, n_train, hyper.batch_size)
    p_tokens, p_labels = data.train_tokens[idx], data.train_labels[idx]
    sampled = weights.sample_objectives(k_samp, num_obj, k_num)
    f = factors[sampled]
    # 2. Batch split: rows of each (R, I) group, then a subset per (R, I, T).
    sizes, group_sizes = weights.batch_split(state.logits, factors, sampled, ba)
    ri = f[:, 2] * n_i + f[:, 0]
    rit = ri * n_t + f[:, 1]
    rows_idx = jax.vmap(lambda g: jax.random.randint(
        jax.random.fold_in(k_rows, g), (ba,), 0, n_train))(ri)
    u = jax.vmap(lambda g: jax.random.uniform(jax.random.fold_in(k_sub, g), (ba,)))(rit)
    in_group = jnp.arange(ba)[None] < group_sizes[:, None]
    rank = jnp.argsort(jnp.argsort(jnp.where(in_group, u, 2.0), axis=-1), axis=-1)
    rows = (in_group & (rank < sizes[:, None])).astype(jnp.float32)
    obj_tokens, obj_labels = data.train_tokens[rows_idx], data.train_labels[rows_idx]
    group_keys = jax.vmap(lambda g: jax.random.fold_in(k_group, g))(rit)

    # 3. Per-objective losses and gradients (body + own head).
    hi = head_index[sampled]
    lm_heads = _gather(params["lm_heads"], hi) if has_lm else jnp.zeros((k_num,))
    cls_heads = _gather(params["aux_heads"], hi) if has_sup else jnp.zeros((k_num,))
    enc = params["encoder"]
    # lax.map, not vmap: sequential objectives are faster on CPU than a vmapped
    # backward pass, and compile the same.
    (losses, n_active), (g_enc, g_lm, g_cls) = jax.lax.map(
        lambda a: obj_grad(enc, *a),
        (lm_heads, cls_heads, group_keys, obj_tokens, obj_labels, rows,
         t_tab[sampled], r_tab[sampled], o_tab[sampled]))
    l_prim, g_prim = jax.value_and_grad(
        lambda p: primary_loss(net, spec, p, k_prim, p_tokens, p_labels))(
            {"encoder": enc, "primary_head": params["primary_head"]})

    # 5. Clip each objective's body gradient to clip_norm; combine.
    norms = jax.vmap(optax.tree.norm)(g_enc)
    clip = weights.clip_factor(norms, hyper.clip_norm)
    prim_clip = weights.clip_factor(optax.tree.norm(g_prim["encoder"]), hyper.clip_norm)
    alpha = weights.balance_weights(state.beta)
    scales = weights.loss_scales(state.logits, factors, sampled, sizes, ba, alpha[1],
                                 hyper.use_all)
    body = jax.tree.map(
        lambda gp, g: alpha[0] * prim_clip * gp + jnp.tensordot(scales * clip, g, axes=1),
        g_prim["encoder"], g_enc)
    grads = {"encoder": body, "primary_head": jax.tree.map(lambda g: alpha[0] * g,
                                                           g_prim["primary_head"])}
    if has_lm:
      grads["lm_heads"] = jax.tree.map(
          lambda z, g: z.at[hi].add(jnp.einsum("k,k...->k...", scales, g)),
          jax.tree.map(jnp.zeros_like, params["lm_heads"]), g_lm)
    if has_sup:
      grads["aux_heads"] = jax.tree.map(
          lambda z, g: z.at[hi].add(jnp.einsum("k,k...->k...", scales, g)),
          jax.tree.map(jnp.zeros_like, params["aux_heads"]), g_cls)
    updates, opt_state = tx.update(grads, state.opt_state, params)
    new_params = optax.apply_updates(params, updates)

    # 4. Cosines with the dev gradient, accumulated for the meta-update.
    metrics = {}
    logit_grads, beta_grad = state.logit_grads, state.beta_grad
    if learn:
      fit = _sample_rows(k_fit, n_train, hyper.dev_batch_size)
      dev = _sample_rows(k_devb, data.dev_tokens.shape[0], hyper.dev_batch_size)
      g_dev, dev_loss, iters = dev_gradient(
          net, hyper, spec, enc, k_dev, data.train_tokens[fit], data.train_labels[fit],
          data.dev_tokens[dev], data.dev_labels[dev])
      cos = jax.vmap(lambda g: weights.tree_cosine(g_dev, g))(g_enc)
      cos_prim = weights.tree_cosine(g_dev, g_prim["encoder"])
      g_aux = jax.tree.map(lambda g: jnp.tensordot(n_active * clip, g, axes=1), g_enc)
      cos_aux = weights.tree_cosine(g_dev, g_aux)
      upstream = weights.logit_gradients(state.logits, factors, sampled, cos,
                                         hyper.use_all)
      logit_grads = jax.tree.map(jnp.add, logit_grads, upstream)
      beta_grad = beta_grad + jnp.stack([-cos_prim, -cos_aux])
      metrics.update(cosines=cos, cos_primary=cos_prim, cos_aux=cos_aux,
                     dev_loss=dev_loss, dev_head_iterations=iters)
    metrics.update(
        loss_primary=l_prim, loss_aux=jnp.sum(scales * losses), losses=losses,
        sampled=sampled, loss_scales=scales, rows=sizes, balance=alpha,
        body_grad_norms=norms)
    new = state._replace(step=state.step + 1, params=new_params, opt_state=opt_state,
                         logit_grads=logit_grads, beta_grad=beta_grad)
    return new, metrics

  return step


def make_meta_apply(hyper: Hyper) -> Callable[[AangState], tuple[AangState, dict]]:
  """The meta-update: the mean accumulated upstream over ``meta_every`` steps, SGD with
  ``aux_lr`` (factors and W_all) and ``balance_lr`` (beta); the sums reset."""

  def apply(state: AangState):
    n = hyper.meta_every
    logits = jax.tree.map(lambda w, g: w - hyper.aux_lr * g / n, state.logits,
                          state.logit_grads)
    beta = state.beta - hyper.balance_lr * state.beta_grad / n
    zero = jax.tree.map(jnp.zeros_like, state.logit_grads)
    return state._replace(logits=logits, beta=beta, logit_grads=zero,
                          beta_grad=jnp.zeros_like(state.beta_grad)), {
                              "balance_after": weights.balance_weights(beta)}

  return apply


def make_stl_step(net, hyper: Hyper, spec: TokenSpec, tx: optax.GradientTransformation,
                  key: jax.Array) -> Callable[[AangState, Data], tuple[AangState, dict]]:
  """The primary task alone, weight 1 (the ``stl`` baseline and final fine-tuning)."""

  def step(state: AangState, data: Data):
    k_rows, k_loss = jax.random.split(jax.random.fold_in(key, state.step))
    idx = _sample_rows(k_rows, data.train_tokens.shape[0], hyper.batch_size)
    prim = {"encoder": state.params["encoder"],
            "primary_head": state.params["primary_head"]}
    loss, g = jax.value_and_grad(lambda p: primary_loss(
        net, spec, p, k_loss, data.train_tokens[idx], data.train_labels[idx]))(prim)
    grads = jax.tree.map(jnp.zeros_like, state.params)
    grads.update(g)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state._replace(step=state.step + 1,
                          params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state), {"loss_primary": loss}

  return step
