"""The training loss a config names (`configs.ObjectiveConfig`), as a hashable callable for the jitted step.

    objective = objective_for(config.objective)
    loss, metrics = objective(logits, labels, params, targets)

logits (B, K) of the model being trained, labels (B,) integers, params its parameter tree, targets what the loss
needs beside the batch (the teacher's logits (B, K) for distillation, else None). `metrics` are scalars the
training history averages between evaluations (as `train_<name>`).
"""

from dataclasses import dataclass

import jax

from compressm import distill, regularise
from compressm.configs import ObjectiveConfig
from compressm.model import cross_entropy


@dataclass(frozen=True)
class CrossEntropy:
    """The paper's loss (`model.cross_entropy`)."""

    def __call__(self, logits, labels, params, targets) -> tuple[jax.Array, dict]:
        return cross_entropy(logits, labels, logits.shape[-1]), {}


@dataclass(frozen=True)
class Distillation:
    """`distill.distillation_loss` against the teacher's logits (the targets)."""

    temperature: float
    alpha: float

    def __call__(self, logits, labels, params, targets) -> tuple[jax.Array, dict]:
        return distill.distillation_loss(logits, targets, labels, self.temperature, self.alpha), {}


@dataclass(frozen=True)
class HankelRegularised:
    """Cross-entropy + weight * the sum of the HSVs of every block (`regularise.hankel_penalty`); records that
    sum as `hsv_sum`."""

    weight: float

    def __call__(self, logits, labels, params, targets) -> tuple[jax.Array, dict]:
        penalty = regularise.hankel_penalty(params)
        return cross_entropy(logits, labels, logits.shape[-1]) + self.weight * penalty, {"hsv_sum": penalty}


CROSS_ENTROPY = CrossEntropy()


def objective_for(config: ObjectiveConfig):
    """The loss callable of an objective config."""
    if config.loss == "distillation":
        return Distillation(config.temperature, config.alpha)
    if config.loss == "hankel":
        return HankelRegularised(config.hsv_weight)
    return CROSS_ENTROPY
