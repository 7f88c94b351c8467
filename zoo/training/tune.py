"""`--tune`: the head's settings searched on cached features, judged on the validation split.

Features are cached, so a head costs well under a second to train: a small seeded search over
learning rate, L2, label smoothing and dropout is cheap, with the epoch count chosen by early
stopping. Candidates are compared by validation accuracy (ties: the lower plain cross-entropy;
the training loss is no yardstick, since label smoothing shifts it); test is never seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.training.fit import FitSettings, fit
from zoo.training.models import classifier_head

# The space searched; the untuned defaults (lr 3e-3, nothing else) are always a candidate.
SEARCH_SPACE = {
    "learning_rate": (1e-3, 3e-3, 1e-2),
    "l2": (0.0, 1e-4, 1e-3),
    "label_smoothing": (0.0, 0.1),
    "dropout": (0.0, 0.2, 0.5),
}
CANDIDATES = 8  # the defaults plus 7 seeded draws: each costs about one warm head fit
MAX_EPOCHS = 30  # early stopping (patience 3) picks the epoch count below this


@dataclass(frozen=True)
class HeadSettings:
    learning_rate: float
    l2: float = 0.0
    label_smoothing: float = 0.0
    dropout: float = 0.0


@dataclass(frozen=True)
class Trial:
    settings: HeadSettings
    epochs: int  # the best epoch, counted from 1
    val_accuracy: float
    val_loss: float  # plain cross-entropy, whatever the smoothing

    def facts(self) -> dict[str, Any]:
        return {**asdict(self.settings), "epochs": self.epochs, "val_accuracy": self.val_accuracy}


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


def _validation_scores(head: Any, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    probabilities = np.asarray(head(features, training=False))
    picked = probabilities[np.arange(len(labels)), labels]
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    return accuracy, float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


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
        head, train, validation, num_classes, fit_settings, checkpoint, log_dir, on_epoch, 1024
    )
    return head, history


def search(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    fit_settings: FitSettings,
    on_trial: Callable[[int], None] = lambda done: None,
) -> tuple[Trial, list[Trial]]:
    """Train each candidate with early stopping on validation; returns (best, all trials)."""
    if len(validation[1]) == 0:
        raise ValueError("tuning needs a validation split")
    trials = []
    searching = replace(fit_settings, epochs=MAX_EPOCHS)
    for settings in candidates(fit_settings.learning_rate, fit_settings.seed):
        head, history = train_head(settings, train, validation, num_classes, searching)
        accuracy, loss = _validation_scores(head, *validation)
        best_epoch = int(np.argmin(history["val_loss"])) + 1  # the weights early stopping kept
        trials.append(Trial(settings, best_epoch, accuracy, loss))
        on_trial(1)
    best = max(trials, key=lambda trial: (trial.val_accuracy, -trial.val_loss))
    return best, trials
