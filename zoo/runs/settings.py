"""What `zoo run` was asked to do: the settings of a run, their value checks and defaults.

A leaf of the runs stage (it reads nothing from the machine), so every pipeline can take
`settings: RunSettings`; the runner's `preflight` checks the settings against this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.errors import UsageError
from zoo.extraction.engines.base import PRECISIONS
from zoo.training.strategies import STRATEGIES
from zoo.training.unfreeze import parse_unfreeze

if TYPE_CHECKING:  # imported where used: NumPy is not for `zoo list`
    from zoo.data.augment import Augmentation

MODES = ("feature-extraction", "fine-tune")
CLASS_WEIGHTS = ("none", "balanced")
# A linear head gets only ~100 Adam steps in 5 epochs of a small dataset: Keras's 1e-3 leaves it
# under-trained (validation loss still falling). 3e-3 was chosen on the demo's validation split.
# Fine-tuning moves pretrained weights, so it steps gently.
DEFAULT_LEARNING_RATES = {"feature-extraction": 3e-3, "from-scratch": 1e-3, "fine-tune": 1e-4}
LARGEST_SEED = 2**32 - 1  # TensorFlow's seeds are 32-bit
AUGMENT_OPERATIONS = "flip,crop,color"  # zoo.data.augment.OPERATIONS (NumPy-free for `zoo list`)


def option(default: Any, help: str, panel: str) -> Any:
    """A setting, declared once: its default, and the help `zoo run --{name}` shows under `panel`.

    zoo.cli.options turns every field into the typer option (flag from the field's name);
    `zoo.run(**settings)` takes the same names and defaults because it builds RunSettings.
    """
    return field(default=default, metadata={"help": help, "panel": panel})


DATA, TRAINING, EXTRACTION, FINE_TUNING = "Data", "Training", "Feature extraction", "Fine-tuning"


@dataclass
class RunSettings:
    test_fraction: float = option(
        0.2, "Without test/: share of each class held out for test.", DATA
    )
    drop_leaks: bool = option(
        False, "Remove test images that are also in train (same content).", DATA
    )
    val_fraction: float = option(0.1, "Share of train held out for validation.", DATA)
    max_bad: int = option(50, "Most unreadable files to skip before refusing.", DATA)
    epochs: int = option(5, "Training epochs.", TRAINING)
    batch_size: int = option(32, "Training batch size.", TRAINING)
    lr: float | None = option(
        None,
        "Learning rate (default: 3e-3 for a head, 1e-3 from scratch, 1e-4 to fine-tune).",
        TRAINING,
    )
    seed: int = option(42, "Seed for the validation split and training.", TRAINING)
    patience: int = option(3, "Early-stopping patience, in epochs.", TRAINING)
    class_weight: str = option(
        "none", "none, or balanced: weight the loss by 1/class frequency.", TRAINING
    )
    tune: bool = option(
        False, "Search the head's settings on validation, then refit (frozen only).", TRAINING
    )
    seeds: int = option(
        1,
        "Frozen: train N heads (seeds seed, seed+1 and on) on the cached features and report "
        "their spread; the verdict compares their averaged predictions.",
        TRAINING,
    )
    augment: int = option(
        0, "Frozen: add K cached augmented views of each training image.", TRAINING
    )
    augment_ops: str = option(AUGMENT_OPERATIONS, "What a view draws: flip, crop, color.", TRAINING)
    logdir: Path | None = option(
        None, "TensorBoard root (default: ZOO_HOME/tensorboard).", TRAINING
    )
    experiment: str | None = option(None, "TensorBoard experiment name.", TRAINING)
    engine: str = option(
        "auto",
        "auto (OpenVINO on a CPU, TensorFlow on a GPU), tensorflow, openvino.",
        EXTRACTION,
    )
    precision: str = option(
        "fp32", "fp32, or bf16 on CPUs with native bf16 (OpenVINO).", EXTRACTION
    )
    ray: str | None = option(
        None,
        "Extract features on a Ray cluster: HOST:PORT of its head, or auto (needs zoo[ray]).",
        EXTRACTION,
    )
    mode: str = option("feature-extraction", "feature-extraction or fine-tune.", FINE_TUNING)
    unfreeze: str | None = option(
        None,
        "Fine-tune in two stages: the head frozen, then all, the top N layers or a "
        "fraction (0.25) of the backbone at --lr (default 1e-4).",
        FINE_TUNING,
    )
    fine_tune_epochs: int | None = option(
        None, "--unfreeze: epochs of stage 2 (default: --epochs).", FINE_TUNING
    )
    head_from: int | None = option(None, "Fine-tune: start from this run's head.", FINE_TUNING)
    strategy: str = option(
        "auto",
        "End-to-end training: auto, default, mirrored (local GPUs) or multi-worker (TF_CONFIG).",
        FINE_TUNING,
    )

    def __post_init__(self) -> None:
        """Out-of-range settings are usage errors (exit 2), caught before any work starts.

        Values only: what this machine has (engines, Ray, the stored run of --head-from) is
        checked by `zoo.runs.runner.preflight`, so settings can be made and copied anywhere.
        """
        rules = [
            (1 <= self.epochs <= 10_000, "--epochs must be between 1 and 10000"),
            (1 <= self.batch_size <= 65_536, "--batch-size must be between 1 and 65536"),
            (self.lr is None or 0 < self.lr <= 1, "--lr must be in (0, 1]"),
            (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1), e.g. 0.1"),
            (0 < self.test_fraction < 1, "--test-fraction must be in (0, 1), e.g. 0.2"),
            (
                self.class_weight in CLASS_WEIGHTS,
                f"--class-weight must be one of {', '.join(CLASS_WEIGHTS)}",
            ),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.max_bad >= 0, "--max-bad must be 0 or more"),
            (self.mode in MODES, f"--mode must be one of {', '.join(MODES)}"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
            (0 <= self.seed <= LARGEST_SEED, f"--seed must be between 0 and {LARGEST_SEED}"),
            (
                self.logdir is None or Path(self.logdir).is_dir() or not Path(self.logdir).exists(),
                f"--logdir {self.logdir} is a file; give a folder (it is created if missing)",
            ),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (
                not self.tune or self.mode == "feature-extraction",
                "--tune searches a frozen backbone's head: drop --mode fine-tune",
            ),
            (
                not (self.tune and self.unfreeze is not None),
                "--tune searches a frozen backbone's head; --unfreeze fine-tunes the backbone: "
                "use one of them",
            ),
            (
                self.fine_tune_epochs is None or self.unfreeze is not None,
                "--fine-tune-epochs sets the second stage of --unfreeze: add --unfreeze "
                "(e.g. --unfreeze 10), or use --epochs",
            ),
            (
                self.fine_tune_epochs is None or 1 <= self.fine_tune_epochs <= 10_000,
                "--fine-tune-epochs must be between 1 and 10000",
            ),
            (
                not self.tune or self.val_fraction > 0,
                "--tune chooses on the validation split: use a --val-fraction above 0, e.g. 0.1",
            ),
            (
                not self.augment or (self.mode == "feature-extraction" and self.unfreeze is None),
                "--augment caches views through a frozen backbone: drop --mode fine-tune "
                "and --unfreeze",
            ),
            (1 <= self.seeds <= 100, "--seeds must be between 1 and 100"),
            (
                self.seeds == 1 or (self.mode == "feature-extraction" and self.unfreeze is None),
                "--seeds trains several heads on a frozen backbone's cached features: drop "
                "--mode fine-tune and --unfreeze",
            ),
            (
                self.seeds == 1 or not self.tune,
                "--seeds and --tune both train many heads: use one of them",
            ),
            (
                not self.augment or self.ray is None,
                "--augment computes its views in this process: drop --ray (or --augment)",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise UsageError(message)
        if self.unfreeze is not None:
            self.unfreeze = parse_unfreeze(self.unfreeze).text  # a usage error if malformed
        self.augmentation()  # a bad --augment or --augment-ops is a usage error too
        if self.ray is not None:
            from zoo.extraction.cluster import check_address  # NumPy: not for `zoo list`

            check_address(self.ray)  # HOST:PORT or auto

    def augmentation(self) -> Augmentation | None:
        """The augmented views to add to the training split, or None without --augment."""
        from zoo.data.augment import Augmentation

        try:
            augmentation = Augmentation.parse(self.augment, self.augment_ops)
        except ValueError as error:
            raise UsageError(str(error)) from None
        return augmentation if augmentation.views else None

    def check_selection(self, backbones: list[Backbone | Combination], all_backbones: bool) -> None:
        """Usage errors of the settings with these backbones, before any work starts."""
        combined = [b.name for b in backbones if isinstance(b, Combination)]
        if combined and (self.mode != "feature-extraction" or self.unfreeze is not None):
            given = [f"--mode {self.mode}"] * (self.mode != "feature-extraction")
            given += ["--unfreeze"] * (self.unfreeze is not None)
            raise UsageError(
                f"{combined[0]} trains one head on frozen features: drop {' and '.join(given)}"
            )
        if self.unfreeze is None or all_backbones:  # with --all, scratch_cnn trains as usual
            return
        for backbone in backbones:
            if backbone.trains_end_to_end:
                raise UsageError(
                    f"--unfreeze: {backbone.name} has no pretrained backbone to unfreeze (it "
                    "trains from scratch); drop --unfreeze or choose a pretrained backbone"
                )

    def mode_for(self, backbone: Backbone | Combination) -> str:
        if backbone.trains_end_to_end:
            return "from-scratch"
        return "fine-tune" if self.unfreeze is not None else self.mode

    def learning_rate_for(self, mode: str) -> float:
        if mode == "feature-extraction" and self.unfreeze is not None:
            return DEFAULT_LEARNING_RATES[mode]  # --unfreeze's head stage; --lr is stage 2's
        return self.lr if self.lr is not None else DEFAULT_LEARNING_RATES[mode]
