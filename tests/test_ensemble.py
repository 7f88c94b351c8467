"""`zoo ensemble`: stored runs' test probabilities averaged into a run of its own."""

import numpy as np
from test_tune import run_main

import zoo
from zoo.runs.store import get_run


def test_ensemble_averages_members_and_is_stored(tiny_registry, tiny_images, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    members = [
        zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05, seed=seed).results[0]
        for seed in (1, 2)
    ]
    assert all(member.ok for member in members)
    ids = [str(member.run_id) for member in members]
    code, out, err = run_main(["ensemble", *ids], capsys)
    assert code == 0, err
    assert "ensemble" in out and "tiny+tiny" in out
    record = get_run(max(member.run_id for member in members) + 1)
    assert record.mode == "ensemble" and record.settings["members"] == [int(i) for i in ids]
    stored = [np.load(get_run(m.run_id).artifacts["test_probabilities"]) for m in members]
    average = np.mean([s["probabilities"] for s in stored], axis=0)
    expected = float(np.mean(average.argmax(axis=1) == stored[0]["labels"]))
    assert record.metrics["accuracy"] == expected
    assert record.metrics["test_images"] == 15


def test_ensemble_refuses_one_run_and_other_data(tiny_registry, tiny_images, tmp_path, capsys):
    from conftest import write_image_folders

    first = zoo.run(["tiny"], data=tiny_images, epochs=1).results[0]
    other = write_image_folders(tmp_path / "other", {"train": 6, "test": 2}, seed=5)
    second = zoo.run(["tiny"], data=other, epochs=1).results[0]
    for args, message in (
        ([first.run_id], "at least two different runs"),
        ([first.run_id, first.run_id], "at least two different runs"),
        ([first.run_id, second.run_id], "not trained on the same data"),
    ):
        code, _, err = run_main(["ensemble", *map(str, args)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
