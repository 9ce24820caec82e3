"""Losses for training the enhancement front-end G against a fixed speaker network E.

Grad-W (arXiv 2401.02626) weights an L1 loss between E's tap activations of the clean and the
enhanced input by P, a softmax over positions of the gradient difference of the true-speaker
logit; Equal-W uses uniform P. See :mod:`gradw.losses.weights` for the schemes and
:class:`EnhancementObjective` for the training loss.
"""

from gradw.losses.deep_feature import weighted_l1, weighted_l1_per_item
from gradw.losses.objective import (
    OBJECTIVE_SCHEMES,
    EnhancementObjective,
    LogitGradient,
    NonFiniteLossError,
    ObjectiveResult,
    check_labels,
    logit_gradient,
)
from gradw.losses.pcgrad import CONFLICT_MODES, combine_gradients
from gradw.losses.spectral import spectral_l1, spectral_l1_per_item
from gradw.losses.weights import (
    GRADIENT_SCHEMES,
    SOFTMAX_SCHEMES,
    WEIGHT_SCHEMES,
    activation_weights,
    check_weight_options,
    gradient_difference,
    standardise,
    uniform_weights,
    weight_stats,
)

__all__ = [
    "CONFLICT_MODES",
    "combine_gradients",
    "GRADIENT_SCHEMES",
    "OBJECTIVE_SCHEMES",
    "SOFTMAX_SCHEMES",
    "WEIGHT_SCHEMES",
    "EnhancementObjective",
    "LogitGradient",
    "NonFiniteLossError",
    "ObjectiveResult",
    "activation_weights",
    "check_labels",
    "check_weight_options",
    "gradient_difference",
    "logit_gradient",
    "spectral_l1",
    "spectral_l1_per_item",
    "standardise",
    "uniform_weights",
    "weight_stats",
    "weighted_l1",
    "weighted_l1_per_item",
]
