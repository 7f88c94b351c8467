"""`--tune`: the head's settings searched on cached features, judged on the validation split.

Features are cached, so a head is cheap to train: a small seeded search over learning rate,
L2, label smoothing and dropout (and, with --augment, whether the views help) trains all its
candidates side by side in one NumPy loop, with the epoch count chosen by early stopping.
Candidates are compared by validation accuracy (ties: the lower plain cross-entropy; the
training loss is no yardstick, since label smoothing shifts it); test is never seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.training.fit import FEATURE_BATCH, FitSettings, class_weights, fit
from zoo.training.models import classifier_head
from zoo.training.recipe import HeadRecipe, l2_gradient, l2_penalty, smoothed_targets

# The space searched; the untuned defaults (lr 3e-3, nothing else) are always a candidate.
SEARCH_SPACE = {
    "learning_rate": (1e-3, 3e-3, 1e-2),
    "l2": (0.0, 1e-4, 1e-3),
    "label_smoothing": (0.0, 0.1),
    "dropout": (0.0, 0.2, 0.5),
}
CANDIDATES = 8  # the defaults plus 7 seeded draws: each costs about one warm head fit
MAX_EPOCHS = 30  # early stopping (--patience) picks the epoch count below this


HeadSettings = HeadRecipe  # a candidate of the search is a recipe's settings


@dataclass(frozen=True)
class Trial:
    settings: HeadSettings
    epochs: int  # the best epoch, counted from 1
    val_accuracy: float
    val_loss: float  # plain cross-entropy, whatever the smoothing
    augmented: bool | None = None  # trained on the augmented views too (None: there were none)

    def facts(self) -> dict[str, Any]:
        facts = {**asdict(self.settings), "epochs": self.epochs, "val_accuracy": self.val_accuracy}
        return facts if self.augmented is None else {**facts, "augmented": self.augmented}


def candidates(default_lr: float, seed: int, count: int = CANDIDATES) -> list[HeadSettings]:
    """The defaults first, then distinct seeded draws from SEARCH_SPACE (same seed, same list)."""
    default = HeadSettings(default_lr)
    grid = [
        HeadSettings(lr, l2, smoothing, dropout)
        for lr in SEARCH_SPACE["learning_rate"]
        for l2 in SEARCH_SPACE["l2"]
        for smoothing in SEARCH_SPACE["label_smoothing"]
        for dropout in SEARCH_SPACE["dropout"]
        if HeadSettings(lr, l2, smoothing, dropout) != default
    ]
    return [default, *random.Random(seed).sample(grid, count - 1)]


def train_head(
    settings: HeadSettings,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    fit_settings: FitSettings,
    checkpoint: Path | None = None,
    log_dir: Path | None = None,
    on_epoch: Callable[[int, dict], None] = lambda epoch, logs: None,
) -> tuple[Any, dict[str, list[float]]]:
    """A fresh head with `settings`, fitted; returns (head, history)."""
    head = classifier_head(num_classes, train[0].shape[1], dropout=settings.dropout, l2=settings.l2)
    fit_settings = replace(
        fit_settings,
        learning_rate=settings.learning_rate,
        label_smoothing=settings.label_smoothing,
    )
    history = fit(
        head,
        train,
        validation,
        num_classes,
        fit_settings,
        checkpoint=checkpoint,
        log_dir=log_dir,
        on_epoch=on_epoch,
        eval_batch_size=FEATURE_BATCH,
    )
    return head, history


def search(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    fit_settings: FitSettings,
    views: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Trial, list[Trial]]:
    """Train every candidate at once with early stopping on validation; returns (best, all).

    With `views` (rows of augmented training images), every candidate is trained twice, on
    train alone and on train + views, so the search also says whether the views help.
    """
    if len(validation[1]) == 0:
        raise ValueError("tuning needs a validation split")
    settings = candidates(fit_settings.learning_rate, fit_settings.seed)
    trainings = {None: train}
    if views is not None:
        augmented = tuple(np.concatenate([train[i], views[i]]) for i in (0, 1))
        trainings = {False: train, True: augmented}
    trials = []
    for augmented, rows in trainings.items():
        heads = HeadBatch(settings, rows[0].shape[1], num_classes)
        heads.class_weights = class_weights(rows[1], num_classes, fit_settings.class_weight)
        found = heads.train(
            rows,
            validation,
            fit_settings.batch_size,
            fit_settings.seed,
            MAX_EPOCHS,
            fit_settings.patience,
        )
        trials += [replace(trial, augmented=augmented) for trial in found]
    best = max(trials, key=lambda trial: (trial.val_accuracy, -trial.val_loss))
    return best, trials


class HeadBatch:
    """Softmax heads with different settings trained side by side on the same batches.

    One [candidates, features, classes] kernel and hand-written gradients in NumPy: a Keras
    `fit` per candidate spent seconds in per-epoch overhead for a fraction of a second of
    arithmetic. Each head is what `classifier_head` builds and `fit` trains, as HeadRecipe
    describes: its initial kernel, dropout on the features, its L2 form and label smoothing, Adam
    with its constants; early stopping on validation loss (patience, best weights kept).
    """

    def __init__(self, settings: list[HeadSettings], feature_dim: int, num_classes: int):
        self.settings = settings
        self.lr, self.l2 = _column(settings, "learning_rate"), _column(settings, "l2")
        self.smoothing = _column(settings, "label_smoothing")
        self.dropout = _column(settings, "dropout")
        shape = (len(settings), feature_dim, num_classes)
        self.kernel = HeadRecipe.initial_kernel(shape)
        self.bias = np.zeros((len(settings), num_classes), np.float32)  # Keras's Dense bias
        self._moments = [np.zeros_like(w) for w in (self.kernel, self.bias) for _ in (0, 1)]
        self._steps = 0
        self.class_weights: np.ndarray | None = None  # per class, as `fit`'s class_weight

    def losses(self, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per candidate: (the loss early stopping watches, plain cross-entropy, accuracy).

        The watched loss is Keras's `val_loss`: smoothed cross-entropy, from the logits as Keras
        computes it for a softmax layer, plus the L2 penalty. One candidate at a time, so the
        arrays are [rows, classes], not [candidates, rows, classes]."""
        rows, scores = np.arange(len(labels)), np.empty((3, len(self.settings)))
        for c in range(len(self.settings)):
            log_p = _log_softmax(features @ self.kernel[c] + self.bias[c])
            picked, smoothing = log_p[rows, labels], self.smoothing[c]
            smoothed = (1 - smoothing) * picked + smoothing * log_p.mean(axis=1)
            penalty = l2_penalty(self.l2[c], self.kernel[c])
            accuracy = np.mean(np.argmax(log_p, axis=1) == labels)
            scores[:, c] = -smoothed.mean() + penalty, -picked.mean(), accuracy
        return scores[0], scores[1], scores[2]

    def step(self, features: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
        """One Adam step of every head on one batch."""
        keep = 1.0 - self.dropout[:, None, None]
        mask = (rng.random((len(self.settings), *features.shape), np.float32) < keep) / keep
        inputs = features[None] * mask  # [candidates, batch, features]
        logits = inputs @ self.kernel + self.bias[:, None]  # matmul, not einsum: BLAS
        error = (_softmax(logits) - self._targets(labels)) / len(labels)  # d loss / d logits
        if self.class_weights is not None:  # Keras: sum of weighted losses / batch size
            error *= self.class_weights[labels][None, :, None].astype(np.float32)
        kernel_gradient = inputs.transpose(0, 2, 1) @ error
        kernel_gradient += l2_gradient(self.l2, self.kernel)
        self._adam([kernel_gradient, error.sum(axis=1)])

    def train(
        self,
        train,
        validation,
        batch_size: int,
        seed: int,
        max_epochs: int = MAX_EPOCHS,
        patience: int = 3,
    ) -> list[Trial]:
        """Epochs of shuffled batches until every head's validation loss stopped improving."""
        rng = np.random.default_rng(seed)
        count = len(self.settings)
        best_loss = np.full(count, np.inf)
        best = [None] * count  # (epoch, plain val loss, val accuracy) at each head's best epoch
        waiting = np.zeros(count, int)
        for epoch in range(1, max_epochs + 1):
            order = rng.permutation(len(train[1]))
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                self.step(train[0][rows], train[1][rows], rng)
            watched, plain, accuracy = self.losses(*validation)
            for c in np.flatnonzero(waiting < patience):
                if watched[c] < best_loss[c]:
                    best_loss[c], waiting[c] = watched[c], 0
                    best[c] = (epoch, float(plain[c]), float(accuracy[c]))
                else:
                    waiting[c] += 1
            if (waiting >= patience).all():
                break
        never = (1, float("inf"), 0.0)  # a loss that was never finite (diverged): last choice
        trials = []
        for settings, found in zip(self.settings, best):
            epochs, val_loss, val_accuracy = found or never
            trials.append(Trial(settings, epochs, val_accuracy, val_loss))
        return trials

    def _targets(self, labels: np.ndarray) -> np.ndarray:
        """[candidates, rows, classes] one-hot labels, smoothed per candidate as Keras does."""
        one_hot = np.eye(self.bias.shape[1], dtype=np.float32)[labels]
        return smoothed_targets(one_hot[None], self.smoothing[:, None, None])

    def _adam(self, gradients: list[np.ndarray]) -> None:
        self._steps += 1
        t = self._steps
        for i, (weights, gradient) in enumerate(zip((self.kernel, self.bias), gradients)):
            m, v = self._moments[2 * i], self._moments[2 * i + 1]
            m += (1 - HeadRecipe.BETA_1) * (gradient - m)
            v += (1 - HeadRecipe.BETA_2) * (np.square(gradient) - v)
            lr = self.lr * np.sqrt(1 - HeadRecipe.BETA_2**t) / (1 - HeadRecipe.BETA_1**t)
            lr = lr.reshape(-1, *[1] * (weights.ndim - 1))
            weights -= lr * m / (np.sqrt(v) + HeadRecipe.EPSILON)


def _column(settings: list[HeadSettings], name: str) -> np.ndarray:
    return np.array([getattr(one, name) for one in settings], np.float32)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
