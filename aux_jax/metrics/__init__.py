"""Evaluation metrics (pure jnp)."""

from aux_jax.metrics.dense import NORMAL_THRESHOLDS
from aux_jax.metrics.dense import NormalStats
from aux_jax.metrics.dense import confusion_matrix
from aux_jax.metrics.dense import depth_error_sums
from aux_jax.metrics.dense import depth_metrics
from aux_jax.metrics.dense import normal_angle_errors
from aux_jax.metrics.dense import normal_metrics
from aux_jax.metrics.dense import normal_metrics_from_stats
from aux_jax.metrics.dense import normal_stats
from aux_jax.metrics.dense import segmentation_metrics

__all__ = [
    "NORMAL_THRESHOLDS",
    "NormalStats",
    "confusion_matrix",
    "depth_error_sums",
    "depth_metrics",
    "normal_angle_errors",
    "normal_metrics",
    "normal_metrics_from_stats",
    "normal_stats",
    "segmentation_metrics",
]
