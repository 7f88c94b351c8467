"""Rank backbones from their frozen features alone, before any head is trained (numpy only).

Two scores of one backbone's features `[N, D]` against the labels `[N]`; higher is better:

- `knn_accuracy`: a k-NN probe, the leave-one-out accuracy of a k-nearest-neighbour vote by
  cosine similarity (the vectors L2-normalised, so cosine and Euclidean order neighbours the
  same). k = `KNN_NEIGHBOURS` (5): small enough for the 5-10 training images a class can have in
  a small subset, odd so that two classes cannot tie at k votes. A tie between classes goes to
  the lowest class index, as scikit-learn's KNeighborsClassifier does.
- `logme`: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
  Learning", ICML 2021), the log of the maximum evidence of a Bayesian linear regression from
  the features to each class's one-hot target, per image, averaged over the classes.

LogME follows the fixed-point algorithm of thuml/LogME (`LogME._fit_fixed_point`, from "Ranking
and Tuning Pre-trained Models", arXiv 2110.10545), with the fix of its issue 23 / open pull
request 24: log|A| for A = alpha I + beta F^T F sums over all D eigenvalues of A, and F^T F has
only rank(F) <= N non-zero ones, so the other D - rank ones contribute log(alpha) each. Without
them the evidence is wrong whenever N < D, zoo's normal case (750 images, 1280-2048 features).

`kendall_tau` says how far a screen's ranking agrees with the trained accuracies.
"""

from __future__ import annotations

import numpy as np

KNN_NEIGHBOURS = 5
SCREENS = ("knn", "logme")
# The fixed point converges in 2-3 steps on features (thuml/LogME stops after 11); 100 is a cap.
LOGME_MAX_STEPS = 100
LOGME_TOLERANCE = 1e-6  # relative change of alpha / beta at which the fixed point has converged
# Eigenvalues of F^T F below this fraction of the largest are zero (the features' rank).
RANK_TOLERANCE = 1e-10
# Rows compared at a time in the k-NN probe: memory is CHUNK x N similarities, not N x N.
KNN_CHUNK = 1024


def screen_score(method: str, features: np.ndarray, labels: np.ndarray) -> float:
    """The score of `method` (one of SCREENS) for these features; higher is better."""
    if method == "knn":
        return knn_accuracy(features, labels)
    if method == "logme":
        return logme(features, labels)
    raise ValueError(f"unknown screen {method!r}; choose one of {', '.join(SCREENS)}")


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = KNN_NEIGHBOURS) -> float:
    """Leave-one-out accuracy of a k-NN vote (cosine similarity) over these features."""
    labels = np.asarray(labels)
    count = len(labels)
    if count < 2:
        raise ValueError("the k-NN probe needs at least 2 images")
    k = min(k, count - 1)
    unit = _unit_rows(np.asarray(features, dtype=np.float64))
    classes = int(labels.max()) + 1
    correct = 0
    for start in range(0, count, KNN_CHUNK):
        rows = np.arange(start, min(start + KNN_CHUNK, count))
        similarity = unit[rows] @ unit.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # leave the image itself out
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(rows), classes), dtype=np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), labels[nearest].ravel()), 1)
        correct += int((votes.argmax(axis=1) == labels[rows]).sum())  # argmax: lowest on ties
    return correct / count


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of these features for these class labels: the mean over classes of the maximum
    log evidence per image (see the module's docstring)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    count, dims = features.shape
    if count < 2:
        raise ValueError("LogME needs at least 2 images")
    projection, eigenvalues = _spectrum(features)
    evidences = []
    for cls in range(int(labels.max()) + 1):
        target = (labels == cls).astype(np.float64)
        projected = projection(target)
        alpha, beta = maximum_evidence(projected, target @ target, eigenvalues, count)
        evidences.append(
            log_evidence(alpha, beta, projected, target @ target, eigenvalues, count, dims)
        )
    return float(np.mean(evidences)) / count


def _spectrum(features: np.ndarray):
    """(y -> U^T y, F^T F's non-zero eigenvalues), U being F's left singular vectors of non-zero
    singular values; from the smaller of the two Gram matrices (F F^T when N <= D), whose
    symmetric eigendecomposition is about twice as fast as F's SVD."""
    count, dims = features.shape
    if count <= dims:
        eigenvalues, vectors = np.linalg.eigh(features @ features.T)  # U diag(s^2) U^T
    else:
        eigenvalues, vectors = np.linalg.eigh(features.T @ features)  # V diag(s^2) V^T
    kept = eigenvalues > RANK_TOLERANCE * max(eigenvalues.max(initial=0.0), 1e-300)
    eigenvalues, vectors = eigenvalues[kept], vectors[:, kept]
    if count <= dims:
        return (lambda target: vectors.T @ target), eigenvalues
    singular = np.sqrt(eigenvalues)
    return (
        lambda target: (vectors.T @ (features.T @ target)) / singular
    ), eigenvalues  # U = F V / s


def maximum_evidence(
    projected: np.ndarray, target_square: float, eigenvalues: np.ndarray, count: int
) -> tuple[float, float]:
    """(alpha, beta) at the evidence's fixed point (MacKay's updates, as thuml/LogME).

    `projected` is U^T y (U: F's left singular vectors of non-zero singular values),
    `target_square` is y^T y, `eigenvalues` F^T F's non-zero eigenvalues.
    """
    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_MAX_STEPS):
        ratio = alpha / beta
        gamma = float((eigenvalues / (eigenvalues + ratio)).sum())
        weights_square, residual = _fit_terms(ratio, projected, target_square, eigenvalues)
        new_alpha = gamma / (weights_square + 1e-12)
        new_beta = (count - gamma) / (residual + 1e-12)
        converged = abs(new_alpha / new_beta - ratio) <= LOGME_TOLERANCE * ratio
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    return alpha, beta


def _fit_terms(
    ratio: float, projected: np.ndarray, target_square: float, eigenvalues: np.ndarray
) -> tuple[float, float]:
    """(m^T m, ||F m - y||^2) for the posterior mean m at alpha / beta = `ratio`.

    In F's singular basis m has components s_i x_i / (s_i^2 + ratio) (x = U^T y), and the
    residual is y's part outside U's span plus ratio x_i / (s_i^2 + ratio) inside it.
    """
    projected_square = projected**2
    weights_square = float((eigenvalues * projected_square / (eigenvalues + ratio) ** 2).sum())
    outside = max(target_square - float(projected_square.sum()), 0.0)
    inside = float((projected_square * (ratio / (eigenvalues + ratio)) ** 2).sum())
    return weights_square, outside + inside


def log_evidence(
    alpha: float,
    beta: float,
    projected: np.ndarray,
    target_square: float,
    eigenvalues: np.ndarray,
    count: int,
    dims: int,
) -> float:
    """log p(y | F, alpha, beta) of the model y = F w + noise, w ~ N(0, I / alpha), noise ~
    N(0, I / beta), for N = `count` targets and D = `dims` features.

    log|A| = sum over all D eigenvalues of A = alpha I + beta F^T F: the non-zero eigenvalues of
    F^T F give log(alpha + beta s_i^2), the D - rank zero ones log(alpha) each (the N < D fix).
    """
    weights_square, residual = _fit_terms(alpha / beta, projected, target_square, eigenvalues)
    log_det = float(np.log(alpha + beta * eigenvalues).sum()) + (dims - len(eigenvalues)) * np.log(
        alpha
    )
    return (
        dims / 2 * np.log(alpha)
        + count / 2 * np.log(beta)
        - log_det / 2
        - beta / 2 * residual
        - alpha / 2 * weights_square
        - count / 2 * np.log(2 * np.pi)
    )


def ranking(scores: dict[str, float]) -> list[str]:
    """Names from the best score to the worst (ties keep the order given)."""
    return sorted(scores, key=lambda name: -scores[name])


def kendall_tau(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float:
    """Kendall's tau-b between two score lists (ties counted as scipy.stats.kendalltau does):
    1 when they order every pair alike, -1 when every pair is reversed; NaN when either list
    has fewer than two distinct values."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"kendall_tau: {len(x)} scores against {len(y)}")
    upper = np.triu_indices(len(x), k=1)
    dx = np.sign(x[:, None] - x[None, :])[upper]
    dy = np.sign(y[:, None] - y[None, :])[upper]
    untied_x, untied_y = np.count_nonzero(dx), np.count_nonzero(dy)
    if not untied_x or not untied_y:
        return float("nan")
    return float((dx * dy).sum() / np.sqrt(untied_x * untied_y))
