"""--unfreeze: fine-tuning in two stages, the top of a SavedModel backbone trained, the rest frozen."""

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INPUT, registry_text, run_main

import zoo
from zoo.errors import UsageError
from zoo.runs.store import get_run
from zoo.training.unfreeze import CannotUnfreeze, Unfreeze, parse_unfreeze

TINY_SHAPE = (TINY_INPUT, TINY_INPUT, 3)


def export_layered_savedmodel(
    folder: Path, *, hide_in_cond: bool = False, list_trainable: bool = True
) -> Path:
    """A hub "reusable SavedModel" of three layers with a BatchNorm-like step after the first.

    Data flow: bottom (kernel, gamma, beta; moving mean updated when training) -> middle (kernel,
    bias) -> top (kernel, bias). The variable lists name them in another order (top first), so
    only the computation can tell which layer is on top. `hide_in_cond` puts the middle layer
    inside a tf.cond, whose branch functions the ordering does not read. Without
    `list_trainable` its trainable_variables list is empty (as a SavedModel that is not TF Hub's
    Reusable SavedModel API shows to hub.KerasLayer).
    """
    import tensorflow as tf

    def variable(shape, name, seed, trainable=True):
        value = tf.random.stateless_normal(shape, seed=[seed, 1], stddev=0.3)
        return tf.Variable(value, name=name, trainable=trainable)

    module = tf.train.Checkpoint()
    module.top_kernel = variable([16, 8], "top_kernel", 1)
    module.top_bias = variable([8], "top_bias", 2)
    module.middle_kernel = variable([16, 16], "middle_kernel", 3)
    module.middle_bias = variable([16], "middle_bias", 4)
    module.bottom_kernel = variable([48, 16], "bottom_kernel", 5)
    module.bottom_gamma = tf.Variable(tf.ones([16]), name="bottom_gamma")
    module.bottom_beta = tf.Variable(tf.zeros([16]), name="bottom_beta")
    module.moving_mean = tf.Variable(tf.zeros([16]), name="moving_mean", trainable=False)
    trainable = [
        module.top_kernel,
        module.top_bias,
        module.bottom_gamma,
        module.middle_kernel,
        module.bottom_kernel,
        module.middle_bias,
        module.bottom_beta,
    ]
    module.trainable_variables = trainable if list_trainable else []
    module.variables = [*trainable, module.moving_mean]
    module.regularization_losses = []

    def middle(x):
        return tf.nn.relu(tf.matmul(x, module.middle_kernel) + module.middle_bias)

    @tf.function(autograph=False)
    def call(images, training=False):
        x = tf.reshape(tf.image.resize(images, [4, 4]), [-1, 48]) / 255.0
        x = tf.matmul(x, module.bottom_kernel)
        if training:
            mean = tf.reduce_mean(x, axis=0)
            module.moving_mean.assign(0.9 * module.moving_mean + 0.1 * mean)
        else:
            mean = module.moving_mean
        x = tf.nn.relu((x - mean) * module.bottom_gamma + module.bottom_beta)
        x = (
            tf.cond(tf.reduce_all(x >= 0), lambda: middle(x), lambda: x)
            if hide_in_cond
            else middle(x)
        )
        return tf.matmul(x, module.top_kernel) + module.top_bias

    spec = tf.TensorSpec([None, *TINY_SHAPE], tf.float32)
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    module.__call__ = call
    tf.saved_model.save(module, str(folder))
    return folder


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> Path:
    return export_layered_savedmodel(tmp_path_factory.mktemp("layered") / "savedmodel")


@pytest.fixture
def layered_registry(tmp_path, layered, monkeypatch) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(registry_text(str(layered)))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def hub_layer(folder: Path):
    import tensorflow_hub as hub

    return hub.KerasLayer(str(folder), trainable=True)


def names(variables) -> list[str]:
    return [v.name.split(":")[0] for v in variables]


# ---- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, layers, fraction",
    [("all", None, None), (" ALL ", None, None), ("10", 10, None), ("0.25", None, 0.25)],
)
def test_good_specs(text, layers, fraction):
    spec = parse_unfreeze(text)
    assert (spec.layers, spec.fraction) == (layers, fraction)


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "1.0", "abc", "", "nan", "inf", "-0.5"])
def test_bad_specs_are_usage_errors(text):
    with pytest.raises(UsageError, match="--unfreeze"):
        parse_unfreeze(text)


def test_counts_from_the_top():
    assert Unfreeze("0.25", fraction=0.25).count(49) == 13  # rounded up
    assert Unfreeze("0.01", fraction=0.01).count(49) == 1  # never nothing
    assert Unfreeze("100", layers=100).count(49) == 49  # more than there are: all of them
    assert Unfreeze("all").count(49) == 49


# ---- choosing and freezing variables -----------------------------------------------------------


def test_variables_are_ordered_by_the_computation_not_by_the_list(layered):
    from zoo.training.unfreeze import flow_order, group_layers

    layer = hub_layer(layered)
    listed = names(layer.trainable_weights)
    assert listed[0] == "top_kernel"  # the SavedModel lists the top first
    ordered = flow_order(layer, TINY_SHAPE, list(layer.trainable_weights))
    assert [names(group) for group in group_layers(ordered)] == [
        ["bottom_kernel", "bottom_gamma", "bottom_beta"],
        ["middle_kernel", "middle_bias"],
        ["top_kernel", "top_bias"],
    ]


@pytest.mark.parametrize(
    "text, chosen",
    [
        ("1", {"top_kernel", "top_bias"}),
        ("0.5", {"top_kernel", "top_bias", "middle_kernel", "middle_bias"}),  # ceil(1.5) = 2
        ("7", None),  # more layers than there are: all of them
        ("all", None),
    ],
)
def test_select_takes_the_top_layers(layered, text, chosen):
    from zoo.training.unfreeze import select

    layer = hub_layer(layered)
    selection = select(layer, parse_unfreeze(text), TINY_SHAPE, "tiny")
    every = set(names(layer.trainable_weights))
    assert set(names(selection.variables)) == (chosen or every)
    assert selection.facts["variables"] == len(chosen or every)
    assert selection.facts["of_parameters"] == 16 * 8 + 8 + 16 * 16 + 16 + 48 * 16 + 16 + 16


def _train_briefly(model, steps: int = 5) -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(16, *TINY_SHAPE)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, size=16)]
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(images, labels, batch_size=8, epochs=steps, verbose=0)


def test_only_the_chosen_variables_change_and_batchnorm_keeps_its_statistics(layered):
    import tf_keras as keras

    from zoo.training.unfreeze import partly_trainable, select

    layer = hub_layer(layered)
    selection = select(layer, parse_unfreeze("1"), TINY_SHAPE, "tiny")
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=TINY_SHAPE),
            partly_trainable(layer, selection),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ]
    )
    head = {"head/kernel", "head/bias"}
    assert set(names(model.trainable_weights)) == {"top_kernel", "top_bias", *head}
    before = {name: v.numpy().copy() for name, v in zip(names(layer.weights), layer.weights)}
    _train_briefly(model)
    after = {name: v.numpy() for name, v in zip(names(layer.weights), layer.weights)}
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    # the frozen layers and the moving mean are as they were
    assert changed == {"top_kernel", "top_bias"}

    # The fixture's BatchNorm is live: the same training through the plain trainable layer moves
    # its statistics (so the check above could fail).
    plain = keras.Sequential(
        [keras.layers.InputLayer(input_shape=TINY_SHAPE), layer, keras.layers.Dense(3)]
    )
    layer.trainable = True
    _train_briefly(plain, steps=1)
    assert not np.array_equal(after["moving_mean"], layer.resolved_object.moving_mean.numpy())


def test_a_savedmodel_without_trainable_variables_says_so(tmp_path):
    from zoo.training.unfreeze import select

    frozen = export_layered_savedmodel(tmp_path / "frozen", list_trainable=False)
    with pytest.raises(CannotUnfreeze, match="lists no trainable variables.*without --unfreeze"):
        select(hub_layer(frozen), parse_unfreeze("3"), TINY_SHAPE, "tiny")


def test_variables_hidden_in_control_flow_allow_only_all(tmp_path):
    from zoo.training.unfreeze import select

    layer = hub_layer(export_layered_savedmodel(tmp_path / "cond", hide_in_cond=True))
    with pytest.raises(CannotUnfreeze, match="data-flow order.*--unfreeze all"):
        select(layer, parse_unfreeze("1"), TINY_SHAPE, "tiny")
    assert len(select(layer, parse_unfreeze("all"), TINY_SHAPE, "tiny").variables) == 7


# ---- runs ----------------------------------------------------------------------------------------


def test_a_staged_run_is_one_stored_run_with_both_stages(layered_registry, tiny_images):
    summary = zoo.run(
        ["tiny"], data=tiny_images, unfreeze="1", epochs=3, fine_tune_epochs=2, batch_size=8
    )
    (result,) = summary.results
    assert result.ok, result.reason
    assert result.mode == "fine-tune" and result.epochs_run == 5
    record = get_run(result.run_id)
    head, tune = record.settings["stages"]
    assert head["stage"] == "head" and head["epochs_run"] == 3 and head["lr"] == 3e-3
    assert tune["stage"] == "fine-tune" and tune["epochs_run"] == 2 and tune["lr"] == 1e-4
    assert tune["unfreeze"]["layers"] == 1 and tune["unfreeze"]["of_layers"] == 3
    assert tune["unfreeze"]["variables"] == 2
    assert tune["unfreeze"]["lowest"] == "top_kernel:0 [16, 8]"
    assert record.settings["lr"] == 1e-4 and record.settings["unfreeze"] == "1"
    assert len(record.history["loss"]) == 5 and len(record.history["val_loss"]) == 5
    assert Path(result.artifacts["model"], "saved_model.pb").is_file()
    assert result.computed_features == 45  # stage 1 ran on (newly cached) features


def test_head_from_replaces_stage_one(layered_registry, tiny_images):
    first = zoo.run(["tiny"], data=tiny_images, epochs=2, batch_size=8).results[0]
    staged = zoo.run(
        ["tiny"], data=tiny_images, unfreeze="all", head_from=first.run_id, epochs=1
    ).results[0]
    assert staged.ok, staged.reason
    head, tune = get_run(staged.run_id).settings["stages"]
    assert head["from_run"] == first.run_id and head["epochs_run"] == 2
    assert tune["unfreeze"]["layers"] is None and tune["unfreeze"]["variables"] == 7
    assert staged.computed_features is None  # no features were read: the head came from run 1


def test_cli_table_says_what_was_unfrozen(layered_registry, tiny_images, capsys):
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--unfreeze", "0.5"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert "fine-tune, top 2/3" in out and "in two stages" in out


def test_a_backbone_that_cannot_be_unfrozen_is_a_failed_row(
    tmp_path, tiny_images, monkeypatch, capsys
):
    frozen = export_layered_savedmodel(tmp_path / "frozen", list_trainable=False)
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(frozen)))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--unfreeze", "1"]
    code, _, err = run_main(args, capsys)
    assert code == 1
    assert "tiny failed: tiny: its SavedModel lists no trainable variables" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--unfreeze", "0"], "--unfreeze 0 unfreezes nothing"),
        (["--unfreeze=-1"], "--unfreeze -1 unfreezes nothing"),
        (["--unfreeze", "1.5"], "a fraction must be between 0 and 1"),
        (["--unfreeze", "abc"], "--unfreeze abc: give all, a number of top layers"),
        (["--unfreeze", "3", "--tune"], "use one of them"),
        (["--fine-tune-epochs", "2"], "--fine-tune-epochs sets the second stage"),
        (["--unfreeze", "3", "--fine-tune-epochs", "0"], "--fine-tune-epochs must be between"),
    ],
)
def test_bad_usage_is_one_line_exit_2(tiny_registry, tiny_images, capsys, extra, message):
    code, out, err = run_main(["run", "tiny", "--data", str(tiny_images), *extra], capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_unfreeze_on_a_backbone_without_pretrained_weights_is_usage(capsys):
    code, _, err = run_main(["run", "scratch_cnn", "--unfreeze", "3"], capsys)
    assert code == 2 and "scratch_cnn has no pretrained backbone to unfreeze" in err


# ---- the real backbone ---------------------------------------------------------------------------


def test_efficientnet_lite0_top_layers_train_and_the_rest_stays(zoo_home, lite0_built):
    """Lite0 offline: 49 layers in data-flow order (stem first, head last), a staged run on a
    few demo images, and a training step that moves only the chosen variables."""
    import tensorflow as tf
    import tf_keras as keras
    from conftest import plant_demo_slice

    from zoo.api import get_backbone
    from zoo.extraction.layers import feature_layer
    from zoo.training.unfreeze import flow_order, group_layers, partly_trainable, select

    demo = plant_demo_slice(zoo_home, train_per_class=3, test_per_class=1)
    result = zoo.run(
        ["efficientnet_lite0"],
        data=demo,
        unfreeze="3",
        epochs=1,
        val_fraction=0.34,
        engine="tensorflow",
    ).results[0]
    assert result.ok, result.reason
    tune = get_run(result.run_id).settings["stages"][1]
    assert tune["unfreeze"]["layers"] == 3 and tune["unfreeze"]["of_layers"] == 49

    backbone = get_backbone("efficientnet_lite0")
    layer = feature_layer(backbone, trainable=True)
    ordered = flow_order(layer, (224, 224, 3), list(layer.trainable_weights))
    groups = group_layers(ordered)
    assert len(groups) == 49
    assert tuple(groups[0][0].shape) == (3, 3, 3, 32)  # the stem
    assert tuple(groups[-1][0].shape) == (1, 1, 320, 1280)  # the head convolution
    assert tuple(groups[-2][0].shape) == (1, 1, 1152, 320)  # the last block's projection

    selection = select(layer, parse_unfreeze("3"), (224, 224, 3), backbone.name)
    chosen = {id(v) for v in selection.variables}
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=(224, 224, 3)),
            partly_trainable(layer, selection),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    before = [v.numpy().copy() for v in layer.weights]
    images = tf.random.stateless_uniform([4, 224, 224, 3], seed=[1, 2], minval=-1, maxval=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    model.fit(images, np.eye(3, dtype="float32")[[0, 1, 2, 0]], epochs=1, verbose=0)
    moved = [v for v, old in zip(layer.weights, before) if not np.array_equal(v.numpy(), old)]
    assert {id(v) for v in moved} <= chosen  # nothing outside the top 3 layers, no BN statistics
    assert any(len(v.shape) == 4 for v in moved)  # a chosen kernel did train
