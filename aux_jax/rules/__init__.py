"""Gradient-level rules for combining a main task with auxiliary tasks.

Pure, jittable math over per-task gradients of the shared parameters: a pytree
``grads`` whose every leaf has a leading task axis T (task 0 = main task,
1..K auxiliary). Stateless rules return ``(combined, info)``; stateful rules
are ``*_init`` / ``*_update`` pairs over a NamedTuple state, in optax style.

* `gcs`: Gradient Cosine Similarity (Du et al., 2018).
* `pcgrad`, `pcgrad_with_order`: PCGrad (Yu et al., 2020).
* `cagrad`: CAGrad (Liu et al., 2021).
* `gradnorm_init` / `gradnorm_update`: GradNorm task weights (Chen et al., 2018).
* `olaux_init` / `olaux_update`: OL-AUX task weights (Lin et al., 2019).
* `sample_alignments`, `slgrad_weights`: SLGrad sample weights (Grégoire et al., 2023).
* `subspace_basis`, `attittud_decompose`, `attittud_combine`: ATTITTUD (Dery et al., 2021).
* `mgda`: MGDA, the min-norm point of the convex hull (Sener & Koltun, 2018).
* `imtl`: IMTL-G (Liu et al., 2021).
* `aligned_mtl`: Aligned-MTL (Senushkin et al., 2023).
* `nash_mtl`: Nash-MTL (Navon et al., 2022).
* `gradvac_init` / `gradvac_update`: GradVac (Wang et al., 2021).
* `tree`: task-axis pytree helpers (`task_gram`, `task_dots`, `task_norms`, ...).

The functions `gcs`, `pcgrad`, `cagrad`, `mgda`, `imtl`, `aligned_mtl` and `nash_mtl` share their names with their
modules, so ``aux_jax.rules.cagrad`` is the function; reach the modules with
``from aux_jax.rules.cagrad import ...``.
"""

from aux_jax.rules import attittud
from aux_jax.rules import tree
from aux_jax.rules.attittud import Decomposition
from aux_jax.rules.attittud import combine as attittud_combine
from aux_jax.rules.attittud import decompose as attittud_decompose
from aux_jax.rules.attittud import subspace_basis
from aux_jax.rules.aligned_mtl import AlignedMTLInfo, aligned_mtl
from aux_jax.rules.cagrad import CAGradInfo, cagrad, cagrad_weights
from aux_jax.rules.gcs import GCSInfo, gcs
from aux_jax.rules.gradnorm import GradNormState, gradnorm_init, gradnorm_update
from aux_jax.rules.gradvac import GradVacInfo, GradVacState, gradvac_init, gradvac_update
from aux_jax.rules.imtl import IMTLInfo, imtl
from aux_jax.rules.mgda import MGDAInfo, mgda
from aux_jax.rules.nash_mtl import NashMTLInfo, nash_mtl
from aux_jax.rules.olaux import OLAuxState, olaux_init, olaux_update
from aux_jax.rules.pcgrad import PCGradInfo, pcgrad, pcgrad_with_order, random_orders
from aux_jax.rules.slgrad import sample_alignments, slgrad_weights
from aux_jax.rules.tree import task_combine, task_dots, task_gram, task_norms

__all__ = [
    "AlignedMTLInfo", "GradVacInfo", "GradVacState", "IMTLInfo", "MGDAInfo", "NashMTLInfo",
    "aligned_mtl", "gradvac_init", "gradvac_update", "imtl", "mgda", "nash_mtl",
    "CAGradInfo", "Decomposition", "GCSInfo", "GradNormState", "OLAuxState", "PCGradInfo",
    "attittud", "attittud_combine", "attittud_decompose", "cagrad", "cagrad_weights", "gcs",
    "gradnorm_init", "gradnorm_update", "olaux_init", "olaux_update", "pcgrad",
    "pcgrad_with_order", "random_orders", "sample_alignments", "slgrad_weights",
    "subspace_basis", "task_combine", "task_dots", "task_gram", "task_norms", "tree",
]
