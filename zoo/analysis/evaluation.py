"""Test-set metrics from predicted class probabilities (numpy only)."""

from __future__ import annotations

import numpy as np

from zoo.analysis.statistics import wilson_interval


def evaluate(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, loss, macro-F1, per-class accuracy and the confusion matrix
    (rows: true class). Balanced accuracy is the mean recall over the classes test holds, as
    scikit-learn's `balanced_accuracy_score`: with unequal classes, plain accuracy rewards the
    big ones."""
    predicted = probabilities.argmax(axis=1)
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_totals, predicted_totals = confusion.sum(axis=1), confusion.sum(axis=0)
    hits = np.diag(confusion)
    recall = np.divide(hits, true_totals, out=np.zeros(count), where=true_totals > 0)
    precision = np.divide(hits, predicted_totals, out=np.zeros(count), where=predicted_totals > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(count), where=denominator > 0)
    chosen = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": float((predicted == labels).mean()),
        "accuracy_ci": list(wilson_interval(int(hits.sum()), len(labels))) if len(labels) else None,
        "balanced_accuracy": float(recall[true_totals > 0].mean()),
        "loss": float(-np.log(np.clip(chosen, 1e-7, 1.0)).mean()),
        "macro_f1": float(f1.mean()),
        "per_class_accuracy": {name: float(r) for name, r in zip(classes, recall)},
        "confusion_matrix": confusion.tolist(),
        "test_images": int(len(labels)),
    }


def seed_spread(probabilities: list[np.ndarray], labels: np.ndarray) -> dict:
    """--seeds: each head's test accuracy, their mean and standard deviation (the head's own
    noise, apart from the test set's), and the accuracy of the seed-averaged probabilities."""
    accuracies = [float((each.argmax(axis=1) == labels).mean()) for each in probabilities]
    average = np.mean(probabilities, axis=0)
    return {
        "seeds": len(probabilities),
        "seed_accuracies": accuracies,
        "seed_accuracy_mean": float(np.mean(accuracies)),
        "seed_accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "seed_averaged_accuracy": float((average.argmax(axis=1) == labels).mean()),
    }
