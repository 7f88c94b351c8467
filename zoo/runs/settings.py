"""What `zoo run` was asked to do: the settings of a run, their value checks and defaults.

A leaf of the runs stage (it reads nothing from the machine), so every pipeline can take
`settings: RunSettings`; the runner's `preflight` checks the settings against this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.data.augment import OPERATIONS, Augmentation
from zoo.errors import UsageError
from zoo.extraction.cluster import check_address
from zoo.extraction.engines import PRECISIONS
from zoo.training.strategies import STRATEGIES
from zoo.training.unfreeze import parse_unfreeze

MODES = ("feature-extraction", "fine-tune")
CLASS_WEIGHTS = ("none", "balanced")
# A linear head gets only ~100 Adam steps in 5 epochs of a small dataset: Keras's 1e-3 leaves it
# under-trained (validation loss still falling). 3e-3 was chosen on the demo's validation split.
# Fine-tuning moves pretrained weights, so it steps gently.
DEFAULT_LEARNING_RATES = {"feature-extraction": 3e-3, "from-scratch": 1e-3, "fine-tune": 1e-4}
LARGEST_SEED = 2**32 - 1  # TensorFlow's seeds are 32-bit


@dataclass
class RunSettings:
    epochs: int = 5
    batch_size: int = 32
    lr: float | None = None  # None: the mode's default, DEFAULT_LEARNING_RATES
    seed: int = 42
    mode: str = "feature-extraction"
    val_fraction: float = 0.1
    patience: int = 3
    max_bad: int = 50
    logdir: Path | None = None
    experiment: str | None = None
    head_from: int | None = None  # fine-tune: start from this feature-extraction run's head
    strategy: str = "auto"  # end-to-end training: see zoo.training.strategies
    engine: str = (
        "auto"  # feature extraction: auto (OpenVINO on a CPU, TensorFlow on a GPU) or a name
    )
    precision: str = "fp32"  # fp32, or bf16 where the engine computes it natively on this CPU
    tune: bool = False  # search the head's settings on validation, then refit (zoo.training.tune)
    ray: str | None = None  # extract features on this Ray cluster (HOST:PORT or auto)
    # fine-tune in two stages: the head frozen, then this part of the backbone (zoo.training.unfreeze)
    unfreeze: str | None = None  # all, N top layers, or a fraction of the layers
    fine_tune_epochs: int | None = None  # stage 2's epochs (None: --epochs)
    augment: int = 0  # frozen runs: augmented views of each training image (zoo.data.augment)
    augment_ops: str = ",".join(OPERATIONS)  # which operations a view draws, comma-separated
    seeds: int = 1  # frozen runs: heads trained with seeds seed, seed+1, ... (the head's noise)
    test_fraction: float = 0.2  # a layout without test/: the share of each class carved for test
    drop_leaks: bool = False  # remove test images that are also in train (same content)
    class_weight: str = "none"  # none, or balanced: the loss weighted by inverse class frequency

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
            check_address(self.ray)  # HOST:PORT or auto

    def augmentation(self) -> Augmentation | None:
        """The augmented views to add to the training split, or None without --augment."""
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
