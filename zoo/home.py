"""Where zoo keeps things on disk, and how it writes them without leaving half-written files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def zoo_home() -> Path:
    """The cache root: $ZOO_HOME, else ~/.cache/zoo."""
    configured = os.environ.get("ZOO_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "zoo"


def hub_cache_dir() -> Path:
    """Where TF Hub downloads live ($TFHUB_CACHE_DIR wins when the user set it)."""
    configured = os.environ.get("TFHUB_CACHE_DIR")
    return Path(configured).expanduser() if configured else zoo_home() / "hub"


def converted_dir() -> Path:
    """Backbones that a plugin builds locally (e.g. from PyTorch weights) live here."""
    return zoo_home() / "converted"


def features_dir() -> Path:
    return zoo_home() / "features"


def runs_dir() -> Path:
    return zoo_home() / "runs"


def tensorboard_root() -> Path:
    """TensorBoard logs when no --logdir is given."""
    return zoo_home() / "tensorboard"


def reports_dir() -> Path:
    """Comparison reports (`zoo report --compare`, and after `zoo run` of several backbones)."""
    return zoo_home() / "reports"


def store_path() -> Path:
    return zoo_home() / "runs.sqlite"


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch folder beside `final`; on success rename it into place in one step.

    If the body raises (or the process dies), `final` is untouched and the scratch folder is
    removed (or left under a `.tmp-` name that nothing reads). If another process put a folder
    at `final` first, that one is kept and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield scratch
        try:
            os.replace(scratch, final)
        except OSError:  # a folder is there: another process finished first, its copy is as good
            if not final.is_dir():
                raise
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write `data` to `final` via a temp file and rename, so readers never see a partial file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{final.name}-", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# Characters TensorFlow's checkpoint reader takes for a glob ('[1]' matches '1', not '[1]'),
# Keras's ModelCheckpoint for a format field ('{a,b}' raises) and OpenVINO's convert_model for
# a list of model files ('a,b' is 'a' and 'b').
PATTERN_CHARACTERS = frozenset("*?[]{},")


@contextlib.contextmanager
def pattern_free(path: Path) -> Iterator[Path]:
    """`path`, or while the block runs an alias of it that holds no pattern characters.

    The alias is a symlink in a new temporary folder, to `path` itself when it is a folder,
    else to its parent (created if missing): the same files under a name no API reads as a
    pattern. Paths without such characters are yielded as they are.
    """
    if not PATTERN_CHARACTERS & set(str(path)):
        yield path
        return
    target = path if path.is_dir() else path.parent
    target.mkdir(parents=True, exist_ok=True)
    alias_root = Path(tempfile.mkdtemp(prefix="zoo-alias-"))
    link = alias_root / "path"
    try:
        link.symlink_to(target.resolve(), target_is_directory=True)
        yield link if target == path else link / path.name
    finally:
        with contextlib.suppress(OSError):
            link.unlink()
        shutil.rmtree(alias_root, ignore_errors=True)
