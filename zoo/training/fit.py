"""Fitting: the softmax head on cached features, or a whole model end to end.

Adam + categorical cross-entropy, as in the classic recipe. Early stopping and checkpoint
selection watch the validation split, never the test set.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FitSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int


def tensorboard_dir(logdir: Path, experiment: str) -> Path:
    """<logdir>/<experiment>/<timestamp>, unique even when two runs start in the same second."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = logdir / experiment / stamp
    return folder if not folder.exists() else folder.with_name(f"{stamp}-{os.getpid()}")


def _callbacks(
    has_validation: bool, patience: int, checkpoint: Path, log_dir: Path, on_epoch: Callable
) -> list[Any]:
    import tf_keras as keras

    monitor = "val_loss" if has_validation else "loss"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),  # saves ~0.2 s a run
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor=monitor, save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs or {})
        ),
    ]


# Rows up to this size (feature vectors: 5 KB for 1280 floats) are shuffled as they are; larger
# rows (decoded images: 150 KB at 224x224) through their indices.
LARGEST_SHUFFLED_ROW = 64 * 1024


def _batches(
    inputs: Any, labels: np.ndarray, num_classes: int, batch_size: int, shuffle_seed: int | None
) -> Any:
    """Batches over in-memory arrays as tf.data.

    Shuffling rows is fastest (17 epochs of a head: 1.19 s against 1.42 s through indices, median
    of 5 fresh processes), but the shuffle buffer then holds a copy of every row. Images are
    therefore shuffled through their indices: the buffer holds indices, the pixels one copy.
    """
    import tensorflow as tf

    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    if inputs[:1].nbytes <= LARGEST_SHUFFLED_ROW:
        data = tf.data.Dataset.from_tensor_slices((inputs, one_hot))
        if shuffle_seed is not None:
            data = data.shuffle(len(labels), seed=shuffle_seed)  # a new order every epoch
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    inputs, one_hot = tf.constant(inputs), tf.constant(one_hot)
    order = tf.data.Dataset.range(len(labels))
    if shuffle_seed is not None:
        order = order.shuffle(len(labels), seed=shuffle_seed)
    pick = lambda index: (tf.gather(inputs, index), tf.gather(one_hot, index))  # noqa: E731
    return order.batch(batch_size).map(pick).prefetch(tf.data.AUTOTUNE)


def fit(
    model: Any,
    train: tuple[Any, np.ndarray],
    validation: tuple[Any, np.ndarray],
    num_classes: int,
    settings: FitSettings,
    checkpoint: Path,
    log_dir: Path,
    on_epoch: Callable[[int, dict], None] = lambda epoch, logs: None,
    eval_batch_size: int = 32,
) -> dict[str, list[float]]:
    """Compile and fit `model` on (inputs, integer labels); returns the per-epoch history.

    `eval_batch_size` batches validation, which needs no gradients (features allow large ones).
    """
    import tf_keras as keras

    keras.utils.set_random_seed(settings.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_validation = len(validation[1]) > 0
    history = model.fit(
        _batches(*train, num_classes, settings.batch_size, shuffle_seed=settings.seed),
        validation_data=_batches(*validation, num_classes, eval_batch_size, shuffle_seed=None)
        if has_validation
        else None,
        epochs=settings.epochs,
        verbose=0,
        callbacks=_callbacks(has_validation, settings.patience, checkpoint, log_dir, on_epoch),
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}
