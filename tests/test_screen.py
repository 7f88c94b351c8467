"""The pre-screen's scores against independent computations, on synthetic features.

LogME is checked against the Gaussian marginal likelihood written out directly (the N x N
covariance F F^T / alpha + I / beta, no eigendecomposition tricks), maximised by scipy; the k-NN
probe against scikit-learn's KNeighborsClassifier with leave-one-out; Kendall's tau against
scipy.stats.kendalltau.
"""

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from zoo.analysis import screen


def synthetic(count: int, dims: int, signal: float, classes: int = 4, seed: int = 0):
    """Features with class means `signal` apart in a random direction per class, plus noise:
    the larger `signal`, the better the features separate the classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    means = rng.normal(size=(classes, dims))
    features = signal * means[labels] + rng.normal(size=(count, dims))
    return features, labels


def direct_log_evidence(features, target, alpha, beta) -> float:
    count = len(target)
    covariance = features @ features.T / alpha + np.eye(count) / beta
    return stats.multivariate_normal(np.zeros(count), covariance).logpdf(target)


def direct_maximum(features, target) -> float:
    """max over alpha, beta of the direct log evidence, by a general-purpose optimiser."""

    def negative(log_parameters):
        return -direct_log_evidence(features, target, *np.exp(log_parameters))

    best = min(
        (
            optimize.minimize(
                negative,
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000},
            )
            for start in ([0.0, 0.0], [3.0, -1.0], [-3.0, 1.0])
        ),
        key=lambda result: result.fun,
    )
    return -best.fun


def projected(features, target):
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    kept = singular > 1e-10 * singular.max()
    return left[:, kept].T @ target, singular[kept] ** 2


@pytest.mark.parametrize("count,dims", [(30, 80), (60, 12), (20, 20)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.05, 3.0), (7.0, 0.2)])
def test_log_evidence_is_the_marginal_likelihood(count, dims, alpha, beta):
    features, labels = synthetic(count, dims, signal=0.7)
    target = (labels == 1).astype(float)
    x, eigenvalues = projected(features, target)
    ours = screen.log_evidence(alpha, beta, x, target @ target, eigenvalues, count, dims)
    assert ours == pytest.approx(direct_log_evidence(features, target, alpha, beta), rel=1e-9)


@pytest.mark.parametrize("count,dims", [(30, 80), (40, 200), (50, 10)])
def test_logme_is_the_maximum_evidence_when_images_are_fewer_than_features(count, dims):
    features, labels = synthetic(count, dims, signal=0.5, classes=3)
    expected = (
        np.mean([direct_maximum(features, (labels == c).astype(float)) for c in range(3)]) / count
    )
    assert screen.logme(features, labels) == pytest.approx(expected, abs=1e-5)


def test_logme_without_the_zero_eigenvalues_would_differ():
    """The fix matters: omitting log(alpha) for the D - N zero eigenvalues changes the score."""
    count, dims = 30, 120
    features, labels = synthetic(count, dims, signal=0.5)
    target = (labels == 0).astype(float)
    x, eigenvalues = projected(features, target)
    alpha, beta = screen.maximum_evidence(x, target @ target, eigenvalues, count)
    full = screen.log_evidence(alpha, beta, x, target @ target, eigenvalues, count, dims)
    unpadded = full + (dims - len(eigenvalues)) * np.log(alpha) / 2  # the authors' log|A|
    assert len(eigenvalues) == count
    assert abs(unpadded - full) > 1.0
    assert full == pytest.approx(direct_log_evidence(features, target, alpha, beta), rel=1e-7)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_matches_scikit_learn_leave_one_out(k, seed):
    features, labels = synthetic(90, 40, signal=0.3, classes=5, seed=seed)
    neighbours = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    predicted = cross_val_predict(neighbours, features, labels, cv=LeaveOneOut())
    assert screen.knn_accuracy(features, labels, k=k) == pytest.approx((predicted == labels).mean())


def test_knn_chunks_give_the_same_answer(monkeypatch):
    features, labels = synthetic(50, 16, signal=0.4)
    whole = screen.knn_accuracy(features, labels)
    monkeypatch.setattr(screen, "KNN_CHUNK", 7)
    assert screen.knn_accuracy(features, labels) == whole


@pytest.mark.parametrize("method", screen.SCREENS)
def test_screens_rank_synthetic_backbones_by_their_true_quality(method):
    """Five backbones whose features separate the classes more and more: each screen puts them
    in that order (200 images, 400 features: fewer images than features)."""
    signals = [0.05, 0.1, 0.15, 0.2, 0.3]
    scores = {}
    for rank, signal in enumerate(signals):
        features, labels = synthetic(200, 400, signal, classes=10, seed=rank)
        scores[f"backbone{rank}"] = screen.screen_score(method, features, labels)
    assert screen.ranking(scores) == [f"backbone{r}" for r in reversed(range(len(signals)))]
    assert screen.kendall_tau(list(scores.values()), signals) == 1.0


def test_unknown_screen_is_refused():
    with pytest.raises(ValueError, match="knn, logme"):
        screen.screen_score("fisher", np.zeros((3, 2)), np.zeros(3, int))


@pytest.mark.parametrize(
    "x,y",
    [
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ([0.3, 0.1, 0.9, 0.5, 0.7, 0.2], [0.81, 0.62, 0.84, 0.80, 0.83, 0.70]),
        ([1, 1, 2, 2, 3, 4], [1, 2, 2, 3, 3, 3]),  # ties in both
        ([3, 1, 2], [3, 1, 2]),
    ],
)
def test_kendall_tau_matches_scipy(x, y):
    assert screen.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_kendall_tau_random_lists_match_scipy():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x, y = rng.integers(0, 6, 12), rng.integers(0, 6, 12)
        assert screen.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_kendall_tau_of_constant_scores_is_nan():
    assert np.isnan(screen.kendall_tau([1, 1, 1], [1, 2, 3]))
