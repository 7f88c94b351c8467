"""`zoo run --race` end to end on tiny backbones of clearly different quality, and its usage
errors."""

import json
import subprocess
import sys

import pytest
from conftest import export_tiny_savedmodel, registry_text, run_main, write_image_folders


def export_grey_savedmodel(folder, seed: int = 0):
    """A hub-format SavedModel that sees only brightness: a random projection of the 4x4
    greyscale thumbnail. The tiny images' classes are colours of about the same brightness,
    so its features are near chance, where the colour models' are perfect."""
    import tensorflow as tf

    module = tf.train.Checkpoint()
    module.kernel = tf.Variable(tf.random.stateless_normal([16, 8], seed=[seed, 11]))
    module.variables = [module.kernel]
    module.trainable_variables = [module.kernel]
    module.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def call(images):
        grey = tf.image.rgb_to_grayscale(tf.image.resize(images, [4, 4]))
        return tf.matmul(tf.reshape(grey, [-1, 16]), module.kernel)

    module.__call__ = call
    tf.saved_model.save(module, str(folder))
    return folder


@pytest.fixture(scope="session")
def race_models(tmp_path_factory, tiny_savedmodel) -> dict:
    """The race's SavedModels, exported once: every test only reads them."""
    folder = tmp_path_factory.mktemp("race-models")
    return {
        "colour_a": tiny_savedmodel,  # export_tiny_savedmodel(seed=0), as conftest exports it
        "colour_b": export_tiny_savedmodel(folder / "b", seed=1),
        "grey": export_grey_savedmodel(folder / "grey"),
    }


@pytest.fixture
def race_registry(tmp_path, race_models, monkeypatch):
    """colour_a and colour_b (good, tied) and grey (near chance), plus scratch_cnn."""
    entries = [
        *(registry_text(str(model), name=name) for name, model in race_models.items()),
        registry_text(
            "zoo:scratch_cnn",
            name="scratch_cnn",
            plugin="scratch",
            feature_dim=64,
            pretrained=False,
            input_size=[64, 64],  # its pooling needs more than the tiny models' 32 px
        ),
    ]
    registry = tmp_path / "registry.toml"
    registry.write_text("\n".join(entries))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    return registry


@pytest.fixture
def race_images(tmp_path):
    """48 training and 32 test images a class (3 colour classes): round 1 sees 6 and 4."""
    return write_image_folders(tmp_path / "race-data", {"train": 48, "test": 32}, seed=1)


def test_race_drops_the_blind_backbone_and_runs_the_others_in_full(
    race_registry, race_images, capsys
):
    args = ["run", "colour_a", "colour_b", "grey", "--data", str(race_images)]
    args += ["--epochs", "30", "--lr", "0.05", "--race"]
    code, out, err = run_main([*args, "--json"], capsys)
    assert code == 0, err
    ran = json.loads(out)
    status = {row["backbone"]: row["status"] for row in ran["runs"]}
    assert status == {"colour_a": "ok", "colour_b": "ok", "grey": "raced-out"}
    race = ran["race"]
    assert race["finalists"] == ["colour_a", "colour_b"]
    first = race["rounds"][0]
    assert first["images"] == {"train": 18, "test": 12}  # 1/8 of 48 and of 32, 3 classes
    assert first["threshold"] == pytest.approx(0.05 / (3 * 2))
    out_round = next(r for r in race["rounds"] if "grey" in r["out"])
    grey = next(row for row in ran["runs"] if row["backbone"] == "grey")
    metrics = grey["metrics"]
    assert metrics["race_round"] == out_round["round"]
    assert metrics["race_p_value"] <= metrics["race_threshold"] == out_round["threshold"]
    assert metrics["race_accuracy"] < metrics["race_leader_accuracy"]
    low, high = metrics["race_accuracy_ci"]
    assert low <= metrics["race_accuracy"] <= high
    assert metrics["race_leader"] in ("colour_a", "colour_b")
    assert metrics["race_images"] == out_round["images"]
    # a full run of the three computes every image for each: 3 x 240 vectors
    computed = race["computed_features"]
    everything = 3 * (48 + 32) * 3
    assert computed["total"] < everything
    assert computed["total"] == computed["rounds"] + computed["final_runs"]
    final = {row["backbone"]: row["metrics"]["computed_features"] for row in ran["runs"]}
    assert final["colour_a"] < 240  # its rounds' vectors came from the cache
    assert ran["verdict"]["left_out"] and "raced out in round" in ran["verdict"]["left_out"][0]

    code, out, err = run_main(["runs", "--status", "raced-out", "--json"], capsys)
    stored = json.loads(out)
    assert [r["backbone"] for r in stored] == ["grey"]
    assert stored[0]["artifacts"] == {}  # no model, no head, no checkpoint
    code, out, _ = run_main(["runs", "--status", "raced-out"], capsys)
    assert code == 0 and "raced-out: round" in out
    code, out, err = run_main(["compare", *(str(r["run_id"]) for r in ran["runs"])], capsys)
    assert code == 0 and "raced out r" in out, out
    assert "was raced out in round" in err, err


def test_race_table_and_lines_and_scratch_is_not_raced(race_registry, race_images, capsys):
    args = ["run", "colour_a", "grey", "scratch_cnn", "--data", str(race_images), "--race"]
    code, out, err = run_main([*args, "--epochs", "30", "--lr", "0.05"], capsys)
    assert code == 0, err
    assert "not raced (trained end to end): scratch_cnn" in err
    assert "raced out r" in out and "grey raced out, round" in out  # the row and its caption
    assert "race round 1" in out and "colour_a, scratch_cnn ran in full" not in out
    assert "colour_a ran in full" in out


def test_race_with_screen_and_keep_top(race_registry, race_images, capsys):
    args = ["run", "colour_a", "colour_b", "grey", "--data", str(race_images), "--race"]
    args += ["--screen", "knn", "--keep-top", "1", "--epochs", "30", "--lr", "0.05", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    ran = json.loads(out)
    first = ran["race"]["rounds"][0]
    assert set(first["screen"]) == {"colour_a", "colour_b", "grey"}
    assert len(first["screened_out"]) == 2 and "grey" in first["screened_out"]
    screened = [r for r in ran["runs"] if r["status"] == "raced-out"]
    assert {r["metrics"]["race_reason"] for r in screened} == {"screen"}
    assert len(ran["race"]["finalists"]) == 1 and len(ran["race"]["rounds"]) == 1
    assert "race left" in ran["verdict"]["refused"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--screen-only"], "--screen-only trains nothing and --race trains the survivors"),
        (["--keep-top", "2"], "--keep-top keeps the best by a screen"),
        (["--screen", "knn", "--keep-top", "0"], "--keep-top must be at least 1"),
    ],
)
def test_race_usage_errors(race_registry, race_images, capsys, extra, message):
    args = ["run", "colour_a", "grey", "--data", str(race_images), "--race", *extra]
    code, _, err = run_main(args, capsys)
    assert code == 2 and message in err


def test_race_usage_errors_answer_before_tensorflow_is_imported(race_registry, race_images):
    code = (
        "import sys; from zoo.cli import main\n"
        f"for args in (['run', 'colour_a', 'scratch_cnn', '--race', '--data', {str(race_images)!r}],\n"
        "             ['run', 'colour_a', '--keep-top', '2']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 2, done.code\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--race needs at least 2 frozen backbones to race (got 1)" in done.stderr
    assert "--keep-top drops backbones after the race's first round: add --race" in done.stderr


def test_python_api_races_and_refuses_what_the_cli_refuses(race_registry, race_images):
    import zoo
    from zoo.errors import UsageError

    with pytest.raises(UsageError, match="--keep-top drops backbones"):
        zoo.run(["colour_a", "grey"], data=race_images, keep_top=2)
    with pytest.raises(UsageError, match="at least 2 frozen backbones"):
        zoo.run(["colour_a", "scratch_cnn"], data=race_images, race=True)
    names = ["colour_a", "grey", "colour_a+grey"]  # a+b races on its members' features
    summary = zoo.run(names, data=race_images, race=True, epochs=30, lr=0.05, alpha=0.05)
    status = {r.backbone: r.status for r in summary.results}
    assert status == {"colour_a": "ok", "colour_a+grey": "ok", "grey": "raced-out"}
    assert summary.race["finalists"] == ["colour_a", "colour_a+grey"] and summary.exit_code == 0
    # its members' vectors of round 1 were in the cache, computed by colour_a and grey
    assert summary.race["rounds"][0]["computed_features"]["colour_a+grey"] == 0


@pytest.mark.parametrize("status", ["raced-out", "failed"])
@pytest.mark.parametrize("command", ["export", "deploy"])
def test_a_run_without_a_model_is_refused_in_one_line(status, command, capsys):
    """A raced-out (or failed) run keeps no run folder: export and deploy say so in one line."""
    from test_bad_input import cli, one_line
    from test_hardening import record

    from zoo.runs.store import save_run

    run_id = save_run(record(status=status, reason="round 1: 0.2 vs 0.9"))
    args = ["export", str(run_id)] if command == "export" else ["compare", str(run_id)]
    args += ["--deploy", "tflite-int8"] if command == "deploy" else []
    code, _, err = cli(args, capsys)
    assert code == 2
    assert one_line(err) == (
        f"error: run {run_id} has no saved model; pick a successful run (`zoo runs`)"
    )
