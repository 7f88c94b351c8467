"""`zoo run --screen` and `--screen-only` on tiny backbones: the ranking, the cache reused, and
the agreement with stored full runs."""

import json

from conftest import export_tiny_savedmodel, registry_text, run_main


def three_backbones(tmp_path, monkeypatch):
    entries = []
    for seed, name in enumerate(("tiny_a", "tiny_b", "tiny_c")):
        model = export_tiny_savedmodel(tmp_path / f"model-{name}", seed=seed)
        entries.append(registry_text(str(model), name=name))
    registry = tmp_path / "registry.toml"
    registry.write_text("\n".join(entries))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    return ["tiny_a", "tiny_b", "tiny_c"]


def test_screen_only_ranks_without_training_then_agrees_with_full_runs(
    tmp_path, monkeypatch, tiny_images, capsys
):
    names = three_backbones(tmp_path, monkeypatch)
    args = ["run", *names, "--data", str(tiny_images), "--json"]
    code, out, err = run_main([*args, "--screen-only", "--screen-fraction", "0.5"], capsys)
    assert code == 0, err
    facts = json.loads(out)
    assert facts["method"] == "knn" and facts["images"] == 15  # half of 10 per class, 3 classes
    assert sorted(row["backbone"] for row in facts["ranking"]) == names
    assert all(0 <= row["score"] <= 1 for row in facts["ranking"])
    assert all(row["computed_features"] == 15 for row in facts["ranking"])
    assert facts["kendall_tau"] is None  # nothing trained yet
    code, out, _ = run_main(["runs", "--json"], capsys)
    assert json.loads(out) == []  # the screen trains and stores nothing

    code, out, err = run_main([*args, "--screen", "logme", "--epochs", "2"], capsys)
    assert code == 0, err
    ran = json.loads(out)
    screened = [row["backbone"] for row in ran["screen"]["ranking"]]
    assert [row["backbone"] for row in ran["runs"]] == screened  # trained in the screen's order
    assert ran["screen"]["method"] == "logme"

    code, out, err = run_main([*args, "--screen-only", "--screen-fraction", "0.5"], capsys)
    facts = json.loads(out)
    accuracy = {row["backbone"]: row["metrics"]["accuracy"] for row in ran["runs"]}
    assert {row["backbone"]: row["trained_accuracy"] for row in facts["ranking"]} == accuracy
    assert all(row["computed_features"] == 0 for row in facts["ranking"])  # from the cache
    assert facts["kendall_tau"] is None or -1 <= facts["kendall_tau"] <= 1


def test_screen_table_and_trust_line(tmp_path, monkeypatch, tiny_images, capsys):
    names = three_backbones(tmp_path, monkeypatch)
    code, out, err = run_main(
        ["run", *names, "--data", str(tiny_images), "--screen-only", "--screen", "logme"], capsys
    )
    assert code == 0, err
    assert "Screen (logme) on 3 training images" in out  # 1/8 of 10 per class rounds to 1
    assert "agreement with trained accuracy is unknown" in err


def test_bad_screen_is_a_usage_error(tiny_registry, tiny_images, capsys):
    code, _, err = run_main(
        ["run", "tiny", "--data", str(tiny_images), "--screen", "fisher"], capsys
    )
    assert code == 2 and "--screen must be one of knn, logme" in err
    code, _, err = run_main(
        ["run", "tiny", "--data", str(tiny_images), "--screen-only", "--screen-fraction", "0"],
        capsys,
    )
    assert code == 2 and "--screen-fraction must be in (0, 1]" in err


def test_screen_usage_errors_answer_before_tensorflow_is_imported(tiny_registry):
    import subprocess
    import sys

    code = (
        "import sys; from zoo.cli import main\n"
        "for args in (['run', 'tiny', '--screen', 'fisher'],\n"
        "             ['run', 'tiny', '--screen-only', '--screen-fraction', '2']):\n"
        "    try:\n        main(args)\n    except SystemExit as done:\n"
        "        assert done.code == 2, done.code\n"
        "assert 'tensorflow' not in sys.modules, 'a usage error waited for tensorflow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
