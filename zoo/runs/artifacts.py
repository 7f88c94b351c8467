"""A run's artifacts: where they live, the saved model, the head, and reading them back.

The saved model is the full image-to-class model as a plain SavedModel.

`serving_default(pixels) -> probabilities` loads with `tf.saved_model.load` alone: no zoo, no hub
cache. In feature-extraction runs only the head differs from one run to the next, so the full
model is exported once per backbone and class count (a *template*, kept in ZOO_HOME/serving/) and
each run copies it with its own head values written into the variables. A warm run then never
loads the backbone: loading it and exporting took ~1.8 s of a ~4 s warm run; the copy takes 0.06 s.

A feature-extraction run writes no SavedModel at its end, only its head and a note of what it
was trained on (`serving.json`: the backbone's identity and the class count). The SavedModel is
written on first use (`zoo export`, `zoo predict`, `zoo deploy`: `saved_model_folder`) from the
stored head and the backbone, then kept: a cold run does not pay the template's export (7.5 s of
a cold Lite0 run), and a backbone that is never exported (a raced-out one) never does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.analysis.record import RunRecord
from zoo.errors import UsageError, ZooError
from zoo.home import atomic_dir, atomic_write_bytes, pattern_free, runs_dir, zoo_home
from zoo.training.models import head_layer

# Bump when the exported graph changes (export_classifier, or the model create_model builds):
# templates of the old layout are then never reused.
EXPORT_VERSION = 3
HEAD_KERNEL = "head_kernel/.ATTRIBUTES/VARIABLE_VALUE"
HEAD_BIAS = "head_bias/.ATTRIBUTES/VARIABLE_VALUE"
# Beside a frozen run's head: what its SavedModel is written from on first use.
SERVING_RECIPE = "serving.json"


def new_run_folder(backbone_name: str) -> Path:
    """runs/<timestamp>-<backbone>-<random>: unique, and sorted by time in a listing."""
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    return runs_dir() / f"{stamp}-{backbone_name}-{uuid.uuid4().hex[:6]}"


def report_folder(record: RunRecord) -> Path:
    """Where `zoo report` writes a stored run's pictures by default."""
    return record.run_folder / "report"


def save_artifacts(outcome: Any, run_folder: Path) -> dict[str, str]:
    """Write the run's model and head; returns the artifact paths for the run record.

    The run has trained and been evaluated by now: a model that cannot be written (a disk
    fault, a SavedModel TensorFlow cannot re-export) is recorded as `error`, in one line, and
    the run is kept with its metrics.
    """
    artifacts = {"run_folder": str(run_folder), "tensorboard": str(outcome.log_dir)}
    kernel, bias = outcome.head
    try:
        run_folder.mkdir(parents=True, exist_ok=True)
        np.savez(run_folder / "head.npz", kernel=kernel, bias=bias)
        artifacts["head"] = str(run_folder / "head.npz")
        probabilities = save_probabilities(
            run_folder, outcome.test_probabilities, outcome.test_labels
        )
        artifacts["test_probabilities"] = str(probabilities)  # for `zoo ensemble`
        if outcome.serving is not None:  # a frozen run: its model is written on first use
            recipe = json.dumps(outcome.serving, sort_keys=True).encode()
            atomic_write_bytes(run_folder / SERVING_RECIPE, recipe)
            artifacts["model"] = str(run_folder / "model")
            return artifacts
        if outcome.save_model is None:  # a combined run (`zoo run a+b`): head + probabilities
            return artifacts
        with atomic_dir(run_folder / "model") as scratch:
            outcome.save_model(scratch)
        artifacts["model"] = str(run_folder / "model")
    except Exception as error:  # OSError, TensorFlow's export errors...: the run is kept
        artifacts["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
    return artifacts


def save_probabilities(
    folder: Path, probabilities: np.ndarray, labels: np.ndarray, name: str = "test_probabilities"
) -> Path:
    """The test set's predicted probabilities and true labels, for `zoo ensemble` and the verdict."""
    path = folder / f"{name}.npz"
    np.savez(path, probabilities=probabilities.astype(np.float32), labels=labels)
    return path


def refuse_combined(record: RunRecord, verb: str) -> None:
    """A combined run (`zoo run a+b`) has no image-to-class model: say why, and what to do."""
    members = [member["backbone"] for member in record.settings.get("combination") or []]
    if members:
        raise UsageError(
            f"run {record.id} ({record.backbone}) trained one head on the features of "
            f"{len(members)} backbones, so it has no single model to {verb}; {verb} a run of "
            f"one member (`zoo run {members[0]}`), or `zoo ensemble` the members' own runs"
        )


def refuse_ensemble(record: RunRecord, verb: str) -> None:
    """An ensemble run (`zoo ensemble`) stores only its test metrics: say so, and what it can do."""
    if record.mode == "ensemble":
        members = ", ".join(map(str, record.members))
        raise UsageError(
            f"run {record.id} is an ensemble of runs {members}: it stores test metrics only "
            f"(no model, head or curves), so there is nothing to {verb}; `zoo compare "
            f"{record.id}` shows it, `zoo report --compare` draws it beside its members, "
            "and each member run can be exported"
        )


def saved_model_folder(
    record: RunRecord, verb: str, warn: Callable[[str], None] | None = None
) -> Path:
    """The stored run's SavedModel folder, written now if this is its first use; a one-line
    usage error when it has none to `verb`. `warn` hears of a serving template rebuilt."""
    model_dir = check_saved_model(record, verb)
    if not model_dir.is_dir():
        write_serving_model(record, _recipe(record), model_dir, warn or _warning)
    return model_dir


def check_saved_model(record: RunRecord, verb: str) -> Path:
    """The run's SavedModel folder, there or due on first use (not written here: no TensorFlow);
    a one-line usage error when the run has none to `verb` (failed, raced out, ensemble, a+b)."""
    refuse_ensemble(record, verb)
    refuse_combined(record, verb)
    model_dir = record.artifacts.get("model")
    recipe = _recipe(record)
    due = model_dir and recipe is not None and recipe.is_file()
    if not record.is_ok or not model_dir or not (Path(model_dir).is_dir() or due):
        raise UsageError(f"run {record.id} has no saved model; pick a successful run (`zoo runs`)")
    return Path(model_dir)


def _recipe(record: RunRecord) -> Path | None:
    """Where a frozen run keeps what its SavedModel is written from on first use."""
    return record.run_folder / SERVING_RECIPE if record.run_folder else None


def _warning(text: str) -> None:
    warnings.warn(text, stacklevel=3)


def write_serving_model(
    record: RunRecord, recipe: Path, folder: Path, warn: Callable[[str], None]
) -> None:
    """The run's full SavedModel in `folder`, from its stored head and its backbone, which
    must be the very model the head was trained on. Written atomically: an interrupted export
    leaves no folder that a later command takes for a whole model."""
    from zoo.training.models import create_model

    what = f"run {record.id}'s model is written on first use from its head and"
    try:
        facts = json.loads(recipe.read_text())
        backbone_id, num_classes = facts["backbone_id"], int(facts["num_classes"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"{what} {recipe}, which is damaged ({type(error).__name__}); run that backbone again"
        ) from None
    backbone = _same_backbone(record, backbone_id, what)
    kernel, bias = load_head(record)

    def build_model() -> Any:  # only for a new template
        model = create_model(backbone, num_classes)
        head_layer(model).set_weights([kernel, bias])
        return model

    try:
        with atomic_dir(folder) as scratch:
            save_with_head(backbone_id, num_classes, build_model, (kernel, bias), scratch, warn)
    except (ZooError, OSError):
        raise
    except Exception as error:  # TensorFlow's saving failed: the run stays as it was stored
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise ZooError(f"run {record.id}'s model could not be written ({reason})") from error


def _same_backbone(record: RunRecord, backbone_id: str, what: str) -> Any:
    """The run's backbone, on disk, exactly as trained on (model bytes and preprocessing)."""
    from zoo.catalog.plugins import load_catalog
    from zoo.errors import BackboneUnavailable
    from zoo.extraction.cache import backbone_key
    from zoo.sources.hub import resolve

    name = record.backbone
    try:
        backbone = load_catalog().get(name)
    except UsageError as error:
        raise UsageError(
            f"{what} backbone {name}, which is no longer registered: {error}"
        ) from None
    try:
        folder = resolve(backbone)
    except BackboneUnavailable as error:  # its line says how to get it (`zoo pull`, a handle)
        raise BackboneUnavailable(f"{what} backbone {name}, which is not here: {error}") from None
    if backbone_key(backbone, folder) != backbone_id:
        raise UsageError(
            f"{what} backbone {name}, which has changed since (its SavedModel or "
            f"preprocessing); its head fits the old one only: `zoo run {name}` again"
        )
    return backbone


@contextlib.contextmanager
def readable_saved_model(record: RunRecord, verb: str) -> Iterator[Path]:
    """The run's SavedModel folder under a name TensorFlow never reads as a pattern: its
    SavedModel reader and the TFLite converter glob the path (a ZOO_HOME named `a [1]`)."""
    with pattern_free(saved_model_folder(record, verb)) as readable:
        yield readable


def load_serving(record: RunRecord, verb: str, warn: Callable[[str], None] | None = None) -> Any:
    """The stored run's `serving_default(pixels) -> probabilities`, what predict and export run.

    A folder TensorFlow cannot load (missing variables, a damaged graph) is one line.
    """
    folder = saved_model_folder(record, verb, warn)  # a usage error before TensorFlow loads
    import tensorflow as tf

    with pattern_free(folder) as readable:
        try:
            return tf.saved_model.load(str(readable)).signatures["serving_default"]
        except Exception as error:  # whatever TensorFlow raises for a damaged folder
            raise ZooError(
                f"run {record.id}'s saved model {record.artifacts['model']} cannot be "
                f"loaded ({type(error).__name__}); run that backbone again to get a new one"
            ) from None


def load_head(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """The (kernel, bias) a stored run trained, for `--head-from`."""
    head_path = record.artifacts.get("head")
    if not record.is_ok or not head_path or not Path(head_path).is_file():
        raise UsageError(f"run {record.id} has no saved head to start from; pick a successful run")
    kernel, bias = read_arrays(Path(head_path), ("kernel", "bias"), record)
    return kernel, bias


def read_arrays(path: Path, names: tuple[str, ...], record: RunRecord) -> list[np.ndarray]:
    """The named arrays of a run's .npz file; a damaged file is a one-line usage error naming it.

    A zero-byte file raises EOFError, which the command line would take for Ctrl-D.
    """
    try:
        with np.load(path) as stored:
            return [stored[name] for name in names]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else "empty or cut short"
        raise UsageError(
            f"run {record.id}'s {path} is damaged ({type(error).__name__}: {reason}); "
            "run that backbone again"
        ) from None


def export_classifier(model: Any, folder: Path) -> None:
    """Save `model` (pixels in, probabilities out) as a plain SavedModel in `folder`.

    The module tracks only the variables its one function reads, not the Keras model nor the
    backbone's loaded SavedModel: Keras's own serialisation traces every layer (2-4 s for
    EfficientNet-Lite0), and a tracked backbone brings along every function it was saved with
    (its training-mode call too), which every later load converts again: the TFLite converter
    loads the folder twice, and float Lite0 converted in 5.6-6.2 s instead of 7.9-8.1 s. The
    head's kernel and bias are tracked by name, so a copy can be given another (save_with_head).
    """
    import tensorflow as tf

    height, width = model.input_shape[1:3]

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")]
    )
    def serve(pixels):
        return {"probabilities": model(pixels, training=False)}

    # What the traced call reads is what the SavedModel must hold: a hub layer's variables
    # included, which Keras does not list for a plain tf.Module backbone.
    read = serve.get_concrete_function().variables
    head = head_layer(model)
    head_ids = {id(head.kernel), id(head.bias)}
    module = tf.Module()
    module.body_weights = [w for w in read if id(w) not in head_ids]
    module.head_kernel, module.head_bias = head.kernel, head.bias
    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})


def serving_template(
    backbone_id: str,
    num_classes: int,
    build_model: Callable[[], Any],
    warn: Callable[[str], None] = lambda text: None,
) -> Path:
    """The exported full model for `backbone_id` and `num_classes`, built on first use.

    `build_model` returns the frozen backbone + head model; it is only called (and the backbone
    only loaded) when no template exists yet. The template keeps the head of the run that built
    it; every run, that one included, writes its own head into its copy. A template missing one
    of its files (removed by hand or by a disk fault) is set aside and built afresh, with `warn`.
    """
    folder = zoo_home() / "serving" / f"{backbone_id}-{num_classes}classes-v{EXPORT_VERSION}"
    missing = _missing_files(folder) if folder.is_dir() else []
    if missing:
        warn(f"the serving template {folder} lacks {', '.join(missing)}; it is built afresh")
        _set_aside(folder)
    if not folder.is_dir():  # atomic_dir: a folder that exists was complete when renamed
        with atomic_dir(folder) as scratch:
            export_classifier(build_model(), scratch)
    return folder


def _missing_files(template: Path) -> list[str]:
    """What a SavedModel folder lacks of the files every template has."""
    missing = [
        part
        for part in ("saved_model.pb", "variables/variables.index")
        if not (template / part).is_file()
    ]
    if not any(template.glob("variables/variables.data-*")):
        missing.append("variables/variables.data-*")
    return missing


def save_with_head(
    backbone_id: str,
    num_classes: int,
    build_model: Callable[[], Any],
    head: tuple[np.ndarray, np.ndarray],
    folder: Path,
    warn: Callable[[str], None] = lambda text: None,
) -> None:
    """Save the full model with `head` = (kernel, bias) into `folder`, via the template.

    A template is written atomically, so one that cannot be read was damaged by a disk fault or
    by hand: it is set aside and built afresh rather than failing every later run. Errors in
    writing `folder` are the run's own and are raised as they are.
    """
    template = serving_template(backbone_id, num_classes, build_model, warn)
    try:
        variables = _read_variables(template)
    except Exception as error:  # OSError, IndexError, OpError...: whatever a damaged bundle raises
        warn(
            f"the serving template {template} cannot be read ({type(error).__name__}); "
            "it is built afresh"
        )
        _set_aside(template)
        template = serving_template(backbone_id, num_classes, build_model, warn)
        variables = _read_variables(template)
    _write_with_head(template, variables, head, folder)


def _read_variables(template: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    with pattern_free(template / "variables" / "variables") as prefix:  # TensorFlow globs it
        reader = tf.train.load_checkpoint(str(prefix))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_dtype_map()}


def _set_aside(folder: Path) -> None:
    """Remove `folder` so that no reader ever sees it half-removed: rename first, then delete."""
    aside = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):  # another run set it aside first
        os.replace(folder, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _write_with_head(
    template: Path,
    variables: dict[str, np.ndarray],
    head: tuple[np.ndarray, np.ndarray],
    folder: Path,
) -> None:
    """Copy `template` into `folder`, its variables saved anew with the head replaced.

    The graph is the same for every head of one shape, so only the variables are rewritten.
    fingerprint.pb is left out: it hashes the template's variables, not these.
    """
    import tensorflow as tf

    for name, value in zip((HEAD_KERNEL, HEAD_BIAS), head):
        if variables[name].shape != value.shape:
            raise ValueError(
                f"head {name} has shape {value.shape}, the model {variables[name].shape}"
            )
        variables[name] = value.astype(variables[name].dtype)
    shutil.copytree(
        template,
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("variables", "fingerprint.pb"),
    )
    (folder / "variables").mkdir(exist_ok=True)
    tf.raw_ops.SaveV2(
        prefix=str(folder / "variables" / "variables"),
        tensor_names=list(variables),
        shape_and_slices=[""] * len(variables),
        tensors=[tf.constant(value) for value in variables.values()],
    )
