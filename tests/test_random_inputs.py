"""Random inputs: random bytes as images, random values for every number the CLI takes.

Each answer is what docs/errors.md says: an image decodes or is one BadImage; a command line is
refused with one `error:` line and exit 2, or (when every value is in range) goes on. No
TensorFlow is loaded here: every `zoo run` below names a data folder that does not exist, which
is refused after the options are checked and before TensorFlow is imported.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
from conftest import TINY_INPUT, registry_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import cli, one_line

from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import BadImage, load_pixels


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry naming a backbone that is never loaded (so no SavedModel, no TensorFlow)."""
    path = tmp_path / "registry.toml"
    path.write_text(registry_text("/never/loaded"))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


# The fixtures (a zoo home, a registry) are the same for every example: none holds state.
EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]


@EXAMPLES
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=3000))
def test_random_bytes_decode_or_are_one_bad_image(tmp_path, magic, body):
    path = tmp_path / "random.img"
    path.write_bytes(magic + body)
    try:
        pixels = load_pixels(path, Preprocessing((TINY_INPUT, TINY_INPUT)))
    except BadImage as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert pixels.shape == (TINY_INPUT, TINY_INPUT, 3) and pixels.dtype == np.uint8


def declared_sizes():
    """Small sizes (decoded quickly), and sizes over the pixel limit up to PNG's largest."""
    small = st.tuples(st.integers(1, 2000), st.integers(1, 2000))
    huge = st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).filter(
        lambda size: size[0] * size[1] > 250_000_000
    )
    return st.one_of(small, huge)


@EXAMPLES
@given(size=declared_sizes())
def test_any_declared_png_size_decodes_or_is_one_bad_image(tmp_path, size):
    """A PNG header claiming any size: one over the limit is refused before a pixel is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    width, height = size
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path = tmp_path / "claimed.png"
    rows = zlib.compress(bytes(min(width + 1, 4096)))  # often fewer pixels than declared
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    try:
        pixels = load_pixels(path, Preprocessing((TINY_INPUT, TINY_INPUT)))
    except BadImage as error:
        assert "\n" not in str(error)
        if width * height > 250_000_000:
            assert "over zoo's limit of 250 megapixels" in str(error)
    else:
        assert width * height <= 250_000_000 and pixels.shape == (TINY_INPUT, TINY_INPUT, 3)


def number_text():
    """Numbers as a user might type them: huge, negative, fractional, non-finite, or not numbers."""
    return st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "", "1_000", "5 "]),
    )


# option -> (a check that the value is in range, what the error line says when it is not)
RUN_NUMBERS = {
    "--epochs": (lambda v: v == int(v) and 1 <= v <= 10_000, "--epochs must be between"),
    "--batch-size": (lambda v: v == int(v) and 1 <= v <= 65_536, "--batch-size must be between"),
    "--lr": (lambda v: 0 < v <= 1, "--lr must be in (0, 1]"),
    "--seed": (lambda v: v == int(v) and 0 <= v <= 2**32 - 1, "--seed must be between"),
    "--val-fraction": (lambda v: 0 <= v < 1, "--val-fraction must be in [0, 1)"),
    "--patience": (lambda v: v == int(v) and v >= 1, "--patience must be at least 1"),
    "--max-bad": (lambda v: v == int(v) and v >= 0, "--max-bad must be 0 or more"),
    "--head-from": (lambda v: False, "no run with id"),  # the store is empty
}


def _parsed(text: str) -> float | None:
    """The number in `text`, as Python reads it; None for text that is no number."""
    try:
        return float(text)
    except ValueError:
        return None


@EXAMPLES
@given(option=st.sampled_from(sorted(RUN_NUMBERS)), text=number_text())
def test_any_number_given_to_run_is_one_line_exit_2(registry, tmp_path, capsys, option, text):
    missing = tmp_path / "no-such-data"
    args = ["run", "tiny", "--data", str(missing), "--mode", "fine-tune", f"{option}={text}"]
    code, out, err = cli(args, capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    in_range, message = RUN_NUMBERS[option]
    value = _parsed(text)
    accepted = value is not None and math.isfinite(value) and in_range(value)
    if f"data folder {missing} does not exist" in line:  # zoo took the value: it is in range
        assert accepted, line
    elif "Invalid value" not in line:  # typer took it as a number, zoo refused it
        assert message in line and not accepted, line


@EXAMPLES
@given(
    args=st.one_of(
        number_text().map(lambda t: ["runs", f"--limit={t}"]),
        number_text().map(lambda t: ["compare", "--", t]),
        number_text().map(lambda t: ["report", "--", t]),
        number_text().map(lambda t: ["predict", "x.png", f"--run={t}"]),
        number_text().map(lambda t: ["predict", "x.png", "--run=1", f"--top-k={t}"]),
    )
)
def test_any_number_given_to_the_store_commands_is_one_line_exit_2(capsys, args):
    """On an empty store every id is unknown; `runs` answers 0 for a limit in range."""
    code, out, err = cli(args, capsys)
    limit = _parsed(args[1].removeprefix("--limit=")) if args[0] == "runs" else None
    if limit is not None and 1 <= limit <= 1_000_000 and limit == int(limit):
        assert code == 0 and err == ""
        return
    assert code == 2 and out == ""
    one_line(err)
