"""The verdict: intervals, the exact McNemar test and Holm against scipy; grouping; CLI output."""

import json
import os

import numpy as np
import pytest
from conftest import run_main
from scipy import stats

import zoo
from zoo.analysis.record import RunRecord
from zoo.analysis.statistics import accuracy_interval, holm, mcnemar_exact, wilson_interval
from zoo.analysis.verdict import Candidate, decide, sentences
from zoo.runs.store import get_run

# --- the statistics, each against an independent computation --------------------------------


@pytest.mark.parametrize("successes,trials", [(0, 10), (3, 10), (10, 10), (2091, 2500), (1, 1)])
def test_wilson_interval_matches_scipy(successes, trials):
    expected = stats.binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(successes, trials)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize(
    "b,c", [(0, 0), (0, 1), (5, 5), (106, 102), (120, 95), (0, 40), (731, 12), (3, 17)]
)
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(b, c):
    expected = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_stays_exact_on_large_test_sets():
    # 10,000 discordant pairs: float factorials overflow here; exact integers do not.
    assert mcnemar_exact(4900, 5100) == pytest.approx(
        stats.binomtest(4900, 10_000).pvalue, rel=1e-9
    )


def test_holm_matches_a_hand_computation():
    # sorted p: 0.01 (x3 -> 0.03), 0.02 (x2 -> 0.04), 0.04 (x1 -> 0.04; monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_an_old_record_gets_its_interval_from_its_confusion_matrix():
    metrics = {"accuracy": 0.75, "confusion_matrix": [[4, 1], [1, 2]]}
    assert accuracy_interval(metrics) == pytest.approx(wilson_interval(6, 8))
    assert accuracy_interval({"accuracy_ci": [0.1, 0.2]}) == (0.1, 0.2)
    assert accuracy_interval({"accuracy": 0.5}) is None


# --- grouping on constructed cases ------------------------------------------------------------


def candidate(run_id, correct, speed=None, params=None):
    return Candidate(run_id, f"net{run_id}", np.asarray(correct, bool), speed, params)


def outcomes(right: int, total: int, rng) -> np.ndarray:
    correct = np.zeros(total, bool)
    correct[rng.choice(total, right, replace=False)] = True
    return correct


def test_a_clear_winner_stands_alone():
    rng = np.random.default_rng(0)
    strong = outcomes(900, 1000, rng)
    weak = strong.copy()
    weak[np.flatnonzero(strong)[:200]] = False  # the weak one loses 200 of the strong one's hits
    verdict = decide([candidate(1, weak, speed=500), candidate(2, strong, speed=10)])
    assert verdict.best == 2 and verdict.tied == [2] and verdict.worse == [1]
    assert verdict.recommended == 2  # speed breaks ties only among the tied
    assert verdict.pairs[0].b == 200 and verdict.pairs[0].c == 0


def test_runs_that_differ_by_noise_are_tied_and_the_fastest_is_recommended():
    base = np.ones(1000, bool)
    base[:160] = False
    second, third = base.copy(), base.copy()
    second[[0, 1, 2]] = True  # three images only `second` gets right
    second[[500, 501]] = False  # two only `base` gets right
    third[[600, 601, 602, 603]] = False
    runs = [candidate(1, base, 68, 3.4), candidate(2, second, 40, 4.5), candidate(3, third, 30, 6)]
    verdict = decide(runs, prefer="speed")
    assert verdict.best == 2
    assert sorted(verdict.tied) == [1, 2, 3] and verdict.worse == []
    assert verdict.recommended == 1
    assert "fastest" in verdict.because and "smallest" in verdict.because
    assert decide(runs, prefer="accuracy").recommended == 2
    assert decide(runs, prefer="size").recommended == 1


def test_holm_changes_a_decision():
    # Each rival loses 9 of the best's images and wins 1: exact p = 0.0215, "worse" on its own.
    # Three such comparisons at once: Holm multiplies the smallest by 3 (0.064), and all are tied.
    best = np.ones(400, bool)
    best[399] = False
    rivals = []
    for number in range(3):
        rival = best.copy()
        rival[number * 9 : number * 9 + 9] = False
        rival[399] = True
        rivals.append(candidate(number + 2, rival))
    assert mcnemar_exact(9, 1) < 0.05 < 3 * mcnemar_exact(9, 1)
    assert decide([candidate(1, best), rivals[0]]).worse == [2]
    verdict = decide([candidate(1, best), *rivals])
    assert all(pair.p < 0.05 and pair.p_adjusted >= 0.05 for pair in verdict.pairs)
    assert verdict.worse == [] and sorted(verdict.tied) == [1, 2, 3, 4]


def test_the_verdict_needs_two_runs_on_one_test_set():
    with pytest.raises(ValueError):
        decide([candidate(1, [True, False])])
    with pytest.raises(ValueError):
        decide([candidate(1, [True, False]), candidate(2, [True])])


def test_sentences_name_the_tied_the_recommended_and_the_worse():
    strong = np.ones(500, bool)
    weak = strong.copy()
    weak[:100] = False
    verdict = decide(
        [candidate(1, strong, 68, 3.4), candidate(2, strong, 20, 8), candidate(3, weak)]
    )
    text = sentences(verdict, {1: "lite0", 2: "lite2", 3: "scratch"})
    assert (
        text[0]
        == "Tied for best (no significant difference at 0.05): lite0 (run 1), lite2 (run 2)."
    )
    assert text[1].startswith("Recommended: lite0 (run 1), the fastest of them (68 img/s)")
    assert text[2] == "Significantly worse: scratch (run 3) (p < 1e-10)."


# --- through the CLI, on tiny runs -------------------------------------------------------------


def test_zoo_compare_ends_with_the_verdict(tiny_registry, tiny_images, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    runs = [
        zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05, seed=seed).results[0]
        for seed in (1, 2)
    ]
    ids = [str(run.run_id) for run in runs]
    code, out, err = run_main(["compare", *ids], capsys)
    assert code == 0, err
    assert " ±0." in out  # the interval beside each accuracy
    assert "Recommended: tiny (run " in out

    code, out, err = run_main(["compare", *ids, "--json", "--alpha", "0.01"], capsys)
    assert code == 0, err
    verdict = json.loads(out)["verdict"]
    assert {"metric", "alpha", "test", "best", "tied", "worse", "recommended", "because"} <= set(
        verdict
    )
    assert verdict["alpha"] == 0.01 and verdict["metric"] == "accuracy"
    assert set(verdict["tied"]) | set(verdict["worse"]) == {int(i) for i in ids}
    (pair,) = verdict["pairs"]
    assert set(pair) == {"run", "vs", "b", "c", "p", "p_adjusted"}
    # b and c, computed here from the stored probabilities
    stored = [np.load(get_run(int(i)).artifacts["test_probabilities"]) for i in ids]
    right = {int(i): s["probabilities"].argmax(1) == s["labels"] for i, s in zip(ids, stored)}
    best, other = right[pair["vs"]], right[pair["run"]]
    assert (pair["b"], pair["c"]) == (int((best & ~other).sum()), int((other & ~best).sum()))
    record = get_run(int(ids[0]))
    assert record.metrics["accuracy_ci"] == pytest.approx(
        list(wilson_interval(int(right[int(ids[0])].sum()), len(right[int(ids[0])])))
    )


def test_runs_on_other_data_or_alone_get_one_line_and_the_table(
    tiny_registry, tiny_images, tmp_path, capsys
):
    from conftest import write_image_folders

    first = zoo.run(["tiny"], data=tiny_images, epochs=1).results[0]
    other = write_image_folders(tmp_path / "other", {"train": 6, "test": 2}, seed=5)
    second = zoo.run(["tiny"], data=other, epochs=1).results[0]
    code, out, err = run_main(["compare", str(first.run_id), str(second.run_id)], capsys)
    assert code == 0 and "Runs compared" in out
    assert "no verdict: runs 1 and 2 were not evaluated on the same test images" in out
    code, out, _ = run_main(["compare", str(first.run_id)], capsys)
    assert code == 0 and "no verdict: it needs two or more finished runs" in out

    third = zoo.run(["tiny"], data=tiny_images, epochs=1, seed=3).results[0]
    path = get_run(third.run_id).artifacts["test_probabilities"]
    os.remove(path)
    code, out, err = run_main(["compare", str(first.run_id), str(third.run_id)], capsys)
    assert code == 0 and "has no stored test predictions" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--alpha", "1.5"], "--alpha"),
        (["--prefer", "x"], "--prefer"),
        (["--metric", "f1"], "--metric"),
    ],
)
def test_bad_verdict_options_are_one_line(args, message, capsys):
    code, _, err = run_main(["compare", "1", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_zoo_run_of_two_backbones_ends_with_the_verdict_and_tells_mlflow(
    tmp_path, tiny_savedmodel, tiny_images, capsys, monkeypatch
):
    from conftest import registry_text

    pytest.importorskip("mlflow")
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)) + registry_text(str(tiny_savedmodel), name="tiny2")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    store = (tmp_path / "tracking").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("COLUMNS", "200")
    args = ["run", "tiny", "tiny2", "--data", str(tiny_images), "--epochs", "2", "--lr", "0.05"]
    code, out, err = run_main([*args, "--prefer", "accuracy"], capsys)
    assert code == 0, err
    assert "Recommended: tiny" in out and "the most accurate of them" in out
    code, out, err = run_main([*args, "--json"], capsys)
    assert code == 0, err
    verdict = json.loads(out)["verdict"]
    assert sorted(verdict["tied"] + verdict["worse"]) == [3, 4]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("zoo")
    logged = {
        int(found.data.tags["zoo.run_id"]): found.data.tags
        for found in client.search_runs([experiment.experiment_id])
    }
    assert logged[verdict["recommended"]]["zoo.verdict"] == "recommended"
    assert {logged[run]["zoo.verdict_vs"] for run in (3, 4)} == {str(verdict["best"])}


def test_seeds_train_several_heads_on_the_cached_features(tiny_registry, tiny_images, capsys):
    plain = zoo.run(["tiny"], data=tiny_images, epochs=3, lr=0.05, seed=7).results[0]
    seeded = zoo.run(["tiny"], data=tiny_images, epochs=3, lr=0.05, seed=7, seeds=3).results[0]
    assert seeded.ok, seeded.reason
    assert seeded.computed_features == 0  # the extra heads cost no extraction
    metrics = get_run(seeded.run_id).metrics
    assert metrics["accuracy"] == plain.metrics["accuracy"]  # the first head is the plain run's
    accuracies = metrics["seed_accuracies"]
    assert metrics["seeds"] == 3 and len(accuracies) == 3
    assert accuracies[0] == metrics["accuracy"]
    assert metrics["seed_accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert metrics["seed_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    averaged = np.load(get_run(seeded.run_id).artifacts["seed_averaged_probabilities"])
    right = averaged["probabilities"].argmax(1) == averaged["labels"]
    assert metrics["seed_averaged_accuracy"] == pytest.approx(right.mean())

    code, out, err = run_main(["compare", str(plain.run_id), str(seeded.run_id), "--json"], capsys)
    assert code == 0, err
    assert "seed-averaged" in json.loads(out)["verdict"]["test"]
    code, out, _ = run_main(["compare", str(seeded.run_id)], capsys)
    assert "3 heads (seeds)" in out.replace("\n", " ")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seeds", "0"], "--seeds must be between"),
        (["--seeds", "3", "--tune"], "--seeds and --tune"),
        (["--seeds", "3", "--mode", "fine-tune"], "--seeds trains several heads"),
    ],
)
def test_bad_seeds_are_one_line(args, message, tiny_registry, capsys):
    code, _, err = run_main(["run", "tiny", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_speeds_within_the_tolerance_count_as_equal_and_size_decides():
    same = np.ones(100, bool)
    runs = [candidate(1, same, 30, 3.4), candidate(2, same, 27, 4.1), candidate(3, same, 33, 4.8)]
    verdict = decide(runs)
    assert verdict.recommended == 1  # 30 img/s is within 10% of 33: the smaller model wins
    assert verdict.because == (
        "as fast as the fastest within 10% (30 against 33 img/s) and the smallest (3.4 M params)"
    )
    runs[0] = candidate(1, same, 25, 3.4)  # now clearly slower
    assert decide(runs).recommended == 3


# --- balanced accuracy: a paired bootstrap ------------------------------------------------------


def test_balanced_accuracy_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score

    from zoo.analysis.bootstrap import balanced_accuracy

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 4, 300))
    expected = balanced_accuracy_score(labels, predicted)
    assert balanced_accuracy(predicted == labels, labels) == pytest.approx(expected)


def imbalanced_pair():
    """900 images of class 0, 100 of class 1; both runs 95% accurate, balanced 0.75 vs 0.93."""
    labels = np.array([0] * 900 + [1] * 100)
    majority_first = np.ones(1000, bool)
    majority_first[900:950] = False  # misses half the small class
    minority_too = np.ones(1000, bool)
    minority_too[:40] = False  # 40 of the large class
    minority_too[990:] = False  # 10 of the small class
    return labels, majority_first, minority_too


def test_balanced_accuracy_can_separate_runs_that_accuracy_calls_tied():
    labels, majority_first, minority_too = imbalanced_pair()
    runs = [
        Candidate(1, "majority", majority_first, labels=labels),
        Candidate(2, "balanced", minority_too, labels=labels),
    ]
    on_accuracy = decide(runs)
    assert on_accuracy.worse == [] and on_accuracy.pairs[0].b == on_accuracy.pairs[0].c == 50
    on_balance = decide(runs, metric="balanced-accuracy")
    assert on_balance.best == 2 and on_balance.worse == [1]
    assert "paired bootstrap" in on_balance.test
    assert sentences(on_balance, {1: "a", 2: "b"})[0].startswith("Best on balanced accuracy: b")


def test_the_paired_bootstrap_keeps_its_false_alarms_near_alpha():
    from zoo.analysis.bootstrap import paired_bootstrap_p

    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 200)
    alarms = 0
    trials = 200
    for trial in range(trials):  # two runs of the same skill, right on independent images
        first, second = rng.random(200) < 0.8, rng.random(200) < 0.8
        alarms += paired_bootstrap_p(first, second, labels, resamples=400, seed=trial) < 0.05
    assert alarms / trials <= 0.09  # alpha 0.05, with room for 200 trials' own noise
    assert paired_bootstrap_p(first, first, labels) == 1.0


def test_the_report_gallery_shows_the_images_only_one_run_got_right(tmp_path):
    from PIL import Image

    from zoo.runs.comparison import Judgement
    from zoo.runs.verdict_report import GALLERY_IMAGES, gallery_html

    paths = []
    for index in range(30):
        path = tmp_path / f"image_{index}.png"
        Image.new("RGB", (40, 30), (index * 8, 0, 0)).save(path)
        paths.append(str(path))
    (tmp_path / "test_images.json").write_text(json.dumps(paths))
    labels = np.array([0, 1] * 15)
    best = labels.copy()
    rival = labels.copy()
    rival[:12] = 1 - labels[:12]  # the rival misses the first 12 images
    best[20:23] = 1 - labels[20:23]  # the best misses three others
    classes = ["<b>cat</b>", "dog"]
    records = [
        RunRecord(
            id=run,
            backbone=name,
            mode="feature-extraction",
            status="ok",
            metrics={"classes": classes},
            artifacts={"test_images": str(tmp_path / "test_images.json")},
        )
        for run, name in ((1, "best"), (2, "rival"))
    ]
    candidates = [candidate(1, best == labels), candidate(2, rival == labels)]
    judgement = Judgement(verdict=decide(candidates), predicted={1: best, 2: rival}, labels=labels)
    page = gallery_html(records, judgement)
    assert f"only #1 best right ({GALLERY_IMAGES} of 12)" in page
    assert "only #2 rival right (3 of 3)" in page
    assert page.count('<img alt="test image"') == GALLERY_IMAGES + 3
    assert "&lt;b&gt;cat&lt;/b&gt;" in page and "<b>cat" not in page
