"""The softmax head's training recipe, written once.

Two paths train a head: Keras (`models.classifier_head` + `fit.fit`) for every run, and NumPy
(`tune.HeadBatch`) for `--tune`'s candidates side by side. Both read the recipe from here, so
neither can change the initialisation, the L2 form, the smoothing or Adam's constants alone;
`tests/test_tune.py::test_the_batched_heads_train_as_keras_trains_each_head` checks that the two
train the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class HeadRecipe:
    """A head's settings (what `--tune` searches) and the fixed parts of how it trains.

    Fixed: a head on pretrained features starts at zero, i.e. from uniform predictions, as ViT's
    transfer heads do (random initial logits are noise the few steps of a short run must first
    undo; on the demo's validation split, 6 seeds, 5 epochs, lr 3e-3, zeros gave 0.842 accuracy
    and 0.438 loss against 0.825 and 0.451 for Glorot). A from-scratch network keeps Glorot: there
    zeros did worse (3 seeds: 0.638 accuracy and 0.899 loss against 0.696 and 0.739). L2 adds
    `l2 * sum(kernel**2)` to the loss (Keras's form: no 1/2, the bias is not penalised). Label
    smoothing moves `smoothing / classes` of each target to every class. Adam keeps tf_keras's
    default constants, written out so the NumPy path uses the same.
    """

    learning_rate: float
    l2: float = 0.0
    label_smoothing: float = 0.0
    dropout: float = 0.0  # on the features, while training only

    PRETRAINED_INITIALIZER: ClassVar[str] = "zeros"
    SCRATCH_INITIALIZER: ClassVar[str] = "glorot_uniform"
    BETA_1: ClassVar[float] = 0.9
    BETA_2: ClassVar[float] = 0.999
    EPSILON: ClassVar[float] = 1e-7

    @classmethod
    def initializer(cls, pretrained: bool) -> str:
        """The Keras initializer of the head's kernel."""
        return cls.PRETRAINED_INITIALIZER if pretrained else cls.SCRATCH_INITIALIZER

    @classmethod
    def initial_kernel(cls, shape: tuple[int, ...]) -> np.ndarray:
        """The NumPy path's kernel before training: what PRETRAINED_INITIALIZER draws."""
        if cls.PRETRAINED_INITIALIZER != "zeros":
            raise NotImplementedError(cls.PRETRAINED_INITIALIZER)
        return np.zeros(shape, np.float32)

    def keras_regularizer(self) -> Any:
        import tf_keras as keras

        return keras.regularizers.l2(self.l2) if self.l2 else None

    def keras_optimizer(self) -> Any:
        import tf_keras as keras

        return keras.optimizers.Adam(
            learning_rate=self.learning_rate,
            beta_1=self.BETA_1,
            beta_2=self.BETA_2,
            epsilon=self.EPSILON,
        )

    def keras_loss(self) -> Any:
        import tf_keras as keras

        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)


def l2_penalty(l2: np.ndarray | float, kernel: np.ndarray) -> np.ndarray:
    """What L2 adds to the loss (HeadRecipe's form), for one kernel or [candidates, ...] kernels."""
    return np.asarray(l2) * np.sum(np.square(kernel), axis=(-2, -1))


def l2_gradient(l2: np.ndarray | float, kernel: np.ndarray) -> np.ndarray:
    """The gradient of `l2_penalty` with respect to the kernel."""
    return 2 * np.asarray(l2).reshape(-1, *[1] * (kernel.ndim - 1)) * kernel


def smoothed_targets(one_hot: np.ndarray, smoothing: np.ndarray | float) -> np.ndarray:
    """One-hot targets smoothed as Keras's CategoricalCrossentropy smooths them."""
    classes = one_hot.shape[-1]
    return one_hot * (1 - smoothing) + smoothing / classes
