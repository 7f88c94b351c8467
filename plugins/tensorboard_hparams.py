"""TensorBoard HParams: each run's settings and final metrics, so the HPARAMS tab compares runs.

The run's log folder (<logdir>/<experiment>/<timestamp>/) already holds Keras's per-epoch
scalars under train/ and validation/; this adds one hparams session at its top with the test
metrics beside it. `zoo tensorboard` opens TensorBoard on the log root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zoo

# Final numbers written as scalars next to the session: (tag, key in the run's metrics).
METRICS = (
    ("test/accuracy", "accuracy"),
    ("test/macro_f1", "macro_f1"),
    ("test/loss", "loss"),
    ("run/images_per_second", "images_per_second"),
    ("run/seconds", "seconds"),
    ("run/epochs_run", "epochs_run"),
)
# Settings that are places, not choices: they would make every run look different.
NOT_HPARAMS = ("logdir",)


def hparams_of(run: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The run's choices as HParams values (TensorBoard takes bool, number or string)."""
    values = {  # the settings first: the run's own facts below win over a setting of one name
        **{key: value for key, value in run["settings"].items() if key not in NOT_HPARAMS},
        "run_id": run["id"],
        "backbone": run["backbone"],
        "mode": run["mode"],
        "data": Path(run["data"]).name if run.get("data") else None,
        "params_m": run["metrics"].get("params_m"),
    }
    return {
        key: value
        for key, value in values.items()
        if isinstance(value, (bool, int, float, str))  # None (a default left unset) is no value
    }


def write_hparams(run: dict[str, Any], log_dir: Path) -> None:
    """Write the hparams session and the final metrics into `log_dir`."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    step = int(run["metrics"].get("epochs_run") or 0)
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            hp.hparams(hparams_of(run), trial_id=f"run {run['id']}")
            for tag, key in METRICS:
                value = run["metrics"].get(key)
                if value is not None:
                    tf.summary.scalar(tag, float(value), step=step)
    finally:
        writer.close()


@zoo.hookimpl
def run_finished(run):
    """Runs that trained have a log folder; failed ones have nothing to compare."""
    log_dir = run["artifacts"].get("tensorboard")
    if run["status"] == "ok" and log_dir:
        write_hparams(run, Path(log_dir))
