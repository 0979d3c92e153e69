"""Tokens per second and memory of one RoBERTa MLM training step (issue 15, item 4).

    python benchmarks/roberta_step.py [--size=tiny|base] [--batch=32 --seq_len=128] \
        [--dtype=float32|bfloat16] [--repeats=10]

One step is the forward and backward pass of the MLM loss (BERT 80/10/10 corruption of
15% of the tokens, dropout on) and an AdamW update, jitted, on random weights and random
full-length token ids (no checkpoint needed). ``--size=base`` is roberta-base
(12 x 768, 50265 ids); ``tiny`` is 2 x 128 with 4 heads, MLP 512 and 5000 ids, for CPUs.

Prints one JSON line: the median and minimum step time after a warm-up step, tokens per
second (batch x seq_len / median), the XLA memory analysis of the compiled step
(arguments + outputs - donated aliases + temporaries), the device's peak bytes in use
where the backend reports it (GPU), the process's peak resident memory, the device and
library versions.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import sys
import time

from absl import app
from absl import flags
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aux_jax.aang.objectives import denoise_loss  # noqa: E402
from aux_jax.aang.transforms import corrupt  # noqa: E402
from aux_jax.models.roberta import Roberta, RobertaConfig  # noqa: E402

SIZES = {
    "tiny": RobertaConfig(vocab_size=5000, hidden_size=128, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=512),
    "base": RobertaConfig(),
}
BERT = 3  # index of "bert" in aang.space.TRANSFORMS

_SIZE = flags.DEFINE_enum("size", "tiny", list(SIZES), "Model size.")
_BATCH = flags.DEFINE_integer("batch", 32, "Sequences per step.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Tokens per sequence.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed steps after compilation.")


def make_step(model: Roberta, optimizer: optax.GradientTransformation):
  """Jitted ``(params, opt_state, key, tokens) -> (params, opt_state, loss)``."""
  c = model.config
  mask_id = c.vocab_size - 1  # RoBERTa's <mask> is the last id

  def loss_fn(params, key, tokens):
    k_corrupt, k_dropout = jax.random.split(key)
    corrupted, selected = corrupt(k_corrupt, tokens, BERT, mask_id=mask_id,
                                  first_regular_id=4, vocab_size=mask_id)  # specials 0..3
    states = model.encode(params, corrupted, None, k_dropout)
    return denoise_loss(model.lm_logits(params, states), tokens, selected)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, key, tokens):
    loss, grads = jax.value_and_grad(loss_fn)(params, key, tokens)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def run(size="tiny", batch=32, seq_len=128, dtype="float32", repeats=10) -> dict:
  """Times the step; returns the record."""
  config = SIZES[size]
  model = Roberta(config, num_classes=2, dtype=jnp.dtype(dtype))
  key = jax.random.key(0)
  params = jax.jit(model.init)(key)
  optimizer = optax.adamw(1e-5, weight_decay=0.01)
  opt_state = optimizer.init(params)
  tokens = jax.random.randint(key, (batch, seq_len), 4, config.vocab_size - 1, jnp.int32)
  step = make_step(model, optimizer)
  t0 = time.perf_counter()
  memory = step.lower(params, opt_state, key, tokens).compile().memory_analysis()
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(repeats + 1):  # the first call is a warm-up
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, jax.random.key(i), tokens)
    jax.block_until_ready((params, loss))
    times.append(time.perf_counter() - t0)
  median = statistics.median(times[1:])
  device = jax.devices()[0]
  xla_bytes = None if memory is None else int(
      memory.argument_size_in_bytes + memory.output_size_in_bytes
      - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
  return {
      "size": size, "batch": batch, "seq_len": seq_len, "dtype": dtype,
      "layers": config.num_hidden_layers, "width": config.hidden_size,
      "vocab": config.vocab_size,
      "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))),
      "median_ms": round(1e3 * median, 2), "min_ms": round(1e3 * min(times[1:]), 2),
      "compile_s": round(compile_s, 2),
      "tokens_per_s": round(batch * seq_len / median, 1),
      "xla_step_bytes": xla_bytes,
      "xla_temp_bytes": None if memory is None else int(memory.temp_size_in_bytes),
      "device_peak_bytes": (device.memory_stats() or {}).get("peak_bytes_in_use"),
      "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "loss": float(loss), "repeats": repeats,
      "device": device.device_kind, "backend": jax.default_backend(),
      "cpu_count": os.cpu_count(), "jax": jax.__version__, "flax": flax.__version__,
      "optax": optax.__version__,
  }


def main(argv):
  del argv
  print(json.dumps(run(_SIZE.value, _BATCH.value, _SEQ_LEN.value, _DTYPE.value,
                       _REPEATS.value)))


if __name__ == "__main__":
  app.run(main)
