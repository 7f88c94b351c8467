"""Bad input: each case is one line on stderr (what, where, how to fix), never a traceback.

The table in docs/errors.md lists every case with what the user sees and the exit code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INPUT, registry_text, write_image_folders
from PIL import Image

from zoo import Preprocessing
from zoo.cli import main
from zoo.data.decode import load_pixels
from zoo.runs.store import list_runs

RED = (220, 30, 30)
GREEN = (30, 200, 40)
BAD_FILES = ("[bold]notes.txt", "broken.jpg", "cut short.jpg", "empty.png", "notes.txt")


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the real entry point; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def one_line(err: str) -> str:
    """stderr of a refused command: exactly one `error: ...` line and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def jpeg_bytes(colour=RED) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (TINY_INPUT, TINY_INPUT), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def write_bad_files(folder: Path) -> None:
    """Five files Pillow cannot read, one of them named like Rich markup."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = jpeg_bytes()
    (folder / "broken.jpg").write_bytes(whole[:200] + bytes(500) + whole[700:])  # corrupt body
    (folder / "cut short.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "[bold]notes.txt").write_text("not an image either")


def odd_modes() -> dict[str, tuple[Image.Image, tuple[int, int, int]]]:
    """Images in every mode Pillow hands back, with the RGB colour zoo must decode them to."""
    red = Image.new("RGB", (TINY_INPUT, TINY_INPUT), RED)
    half = Image.new("RGBA", red.size, (*RED, 128))
    sixteen = Image.fromarray(np.full((TINY_INPUT, TINY_INPUT), 32896, dtype=np.uint16))
    palette_clear = Image.new("P", red.size, 0)
    palette_clear.putpalette([*RED, 0, 0, 0])
    palette_clear.info["transparency"] = 0  # the red entry is see-through: white shows
    return {
        "rgb.png": (red, RED),
        "gray.png": (red.convert("L"), (87, 87, 87)),
        "gray.jpg": (red.convert("L"), (87, 87, 87)),
        "gray-alpha.png": (red.convert("LA"), (87, 87, 87)),
        "rgba.png": (red.convert("RGBA"), RED),
        "rgba-half.png": (half, (238, 142, 142)),  # composited onto white
        "cmyk.jpg": (red.convert("CMYK"), RED),
        "palette.gif": (red.convert("P"), RED),
        "palette-clear.png": (palette_clear, (255, 255, 255)),
        "sixteen-bit.png": (sixteen, (128, 128, 128)),
        "sixteen-bit.tif": (sixteen, (128, 128, 128)),
    }


def write_odd_modes(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (image, _) in odd_modes().items():
        image.save(folder / name)
    return len(odd_modes())


@pytest.fixture(scope="session")
def huge_jpeg(tmp_path_factory) -> Path:
    """A 12000x12000 JPEG, written by a child process so this one never holds its 576 MB."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    code = f"from PIL import Image; Image.new('RGB', (12000, 12000), {RED}).save({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    return path


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(odd_modes()))
def test_every_image_mode_decodes_to_its_rgb_colour(tmp_path, name):
    image, colour = odd_modes()[name]
    image.save(tmp_path / name)
    with Image.open(tmp_path / name) as reopened:
        assert reopened.mode == image.mode or name.endswith((".jpg", ".gif"))
    pixels = load_pixels(tmp_path / name, Preprocessing((TINY_INPUT, TINY_INPUT)))
    assert pixels.shape == (TINY_INPUT, TINY_INPUT, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.reshape(-1, 3).mean(axis=0) - colour).max() <= 12, name


def test_huge_jpeg_decodes_reduced_in_little_memory(huge_jpeg):
    # A full decode needs 12000 * 12000 * 4 bytes (576 MB); Pillow's draft mode reads 1/8 scale.
    code = (
        "import json, re; from pathlib import Path; from zoo.data.decode import load_pixels; from zoo import Preprocessing\n"
        f"pixels = load_pixels(Path({str(huge_jpeg)!r}), Preprocessing((32, 32)))\n"
        # VmHWM is this process's own peak; ru_maxrss would inherit the (big) parent's at fork.
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(json.dumps({'shape': pixels.shape, 'colour': pixels.mean(axis=(0, 1)).tolist(),"
        " 'peak_mb': peak // 1024}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    decoded = json.loads(done.stdout)
    assert decoded["shape"] == [TINY_INPUT, TINY_INPUT, 3]
    assert np.allclose(decoded["colour"], RED, atol=3)
    assert decoded["peak_mb"] < 250, f"decoding the huge JPEG peaked at {decoded['peak_mb']} MB"


# --- a run over awkward data ------------------------------------------------------------------


@pytest.fixture
def awkward_data(tmp_path, huge_jpeg) -> tuple[Path, int]:
    """Colour classes plus every awkward file; returns the folder and how many images are good."""
    data = write_image_folders(tmp_path / "data", {"train": 4, "test": 2})
    good = 3 * (4 + 2)
    for name, colour in (("red/rouge foncé ✓.png", (200, 20, 20)), ("green/緑 みどり.png", GREEN)):
        Image.new("RGB", (TINY_INPUT, TINY_INPUT), colour).save(data / "train" / name)
        good += 1
    good += write_odd_modes(data / "test" / "red")
    shutil.copy(huge_jpeg, data / "test" / "red" / "huge 12000x12000.jpg")
    good += 1
    write_bad_files(data / "test" / "blue")  # in test: skipped in a known order
    for hidden in (data / "train" / "red" / ".DS_Store", data / "test" / "green" / "._x.png"):
        hidden.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))  # hidden: ignored by design
    return data, good


def test_awkward_images_are_used_and_unreadable_ones_skipped(tiny_registry, awkward_data, capsys):
    data, good = awkward_data
    code, out, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 5 unreadable files skipped: [bold]notes.txt, broken.jpg, cut short.jpg and 2 more"
    ]
    (record,) = list_runs()
    assert record.status == "ok"
    assert record.metrics["computed_features"] == good  # odd modes, huge and non-ASCII: used
    assert record.metrics["test_images"] == 3 * 2 + len(odd_modes()) + 1
    assert "zoo run on" in out


def test_too_many_unreadable_files_are_refused_before_training(
    tiny_registry, awkward_data, capsys, monkeypatch
):
    from zoo.runs import pipelines

    def no_training(*args, **kwargs):
        raise AssertionError("training started on data that should have been refused")

    monkeypatch.setattr(pipelines, "fit", no_training)
    data, _ = awkward_data
    code, _, err = cli(
        ["run", "tiny", "--data", str(data), "--max-bad", "4", "--epochs", "1", "--json"], capsys
    )
    assert code == 2
    line = one_line(err)
    assert "too many unreadable files (5 > --max-bad 4)" in line
    assert "[bold]notes.txt, broken.jpg, cut short.jpg and 2 more" in line
    assert "raise --max-bad" in line
    assert list_runs() == []


def test_a_split_with_no_readable_image_is_refused(tiny_registry, tmp_path, capsys):
    data = write_image_folders(tmp_path / "data", {"train": 2})
    for name in ("red", "green", "blue"):
        (data / "test" / name).mkdir(parents=True)
        (data / "test" / name / f"{name}.txt").write_text("no pixels here")
    code, _, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1", "--json"], capsys)
    assert code == 2
    assert "no test image could be read (3 unreadable files skipped: blue.txt" in one_line(err)


# --- folders that cannot be used --------------------------------------------------------------


def _layout(root: Path, case: str) -> Path:
    """A data folder broken in one way; returns what to pass to --data."""
    data = root / "data"
    if case == "missing":
        return data
    if case == "a file":
        data.write_text("")
        return data
    write_image_folders(data, {"train": 1, "test": 1})
    if case == "no train/":
        shutil.rmtree(data / "train")
    elif case == "no test/":
        shutil.rmtree(data / "test")
    elif case == "empty class folder":
        for path in (data / "test" / "green").iterdir():
            path.unlink()
        (data / "test" / "green" / ".DS_Store").write_bytes(b"Bud1")  # hidden files don't count
    elif case == "no class folders":
        for folder in (data / "train").iterdir():
            shutil.rmtree(folder)
        (data / "train" / "loose.png").write_bytes(jpeg_bytes())
    elif case == "classes differ":
        (data / "test" / "blue").rename(data / "test" / "purple")
    return data


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist; give a folder holding train/ and test/"),
        ("a file", "is a file, not a folder"),
        ("no train/", "has no train/ folder; lay it out as"),
        ("no test/", "has too few images to hold out a test split"),  # train/ alone: carved
        ("empty class folder", "green is empty; add images or remove the folder"),
        ("no class folders", "has no class folders; put images in"),
        ("classes differ", "(missing: blue; extra: purple); use the same class folders"),
    ],
)
def test_unusable_data_folder_is_one_line_exit_2(tiny_registry, tmp_path, capsys, case, expected):
    data = _layout(tmp_path, case)
    code, out, err = cli(["run", "tiny", "--data", str(data)], capsys)
    assert code == 2 and out == ""
    assert expected in one_line(err)
    assert list_runs() == []


def test_train_without_test_is_one_line_exit_2(tiny_registry, tiny_images, capsys):
    code, _, err = cli(["run", "tiny", "--train", str(tiny_images / "train")], capsys)
    assert code == 2 and "give both --train DIR and --test DIR" in one_line(err)


def test_paths_that_look_like_markup_are_printed_as_they_are(tiny_registry, tmp_path, capsys):
    data = tmp_path / "[red]photos [" / "old]"  # '[/old]' would be a Rich closing tag
    code, _, err = cli(["run", "tiny", "--data", str(data)], capsys)
    assert code == 2 and f"data folder {data} does not exist" in one_line(err)


# --- command-line values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--epochs", "0", "--epochs must be between 1 and 10000"),
        ("--epochs", "10001", "--epochs must be between 1 and 10000"),
        ("--batch-size", "0", "--batch-size must be between 1 and 65536"),
        ("--lr", "0", "--lr must be in (0, 1]"),
        ("--lr", "1.5", "--lr must be in (0, 1]"),
        ("--val-fraction", "1", "--val-fraction must be in [0, 1)"),
        ("--val-fraction", "-0.1", "--val-fraction must be in [0, 1)"),
        ("--patience", "0", "--patience must be at least 1"),
        ("--max-bad", "-1", "--max-bad must be 0 or more"),
        ("--mode", "finetune", "--mode must be one of feature-extraction, fine-tune"),
        ("--epochs", "five", "Invalid value for '--epochs'"),
        ("--batch-size", "3.5", "Invalid value for '--batch-size'"),
        ("--lr", "fast", "Invalid value for '--lr'"),
        ("--val-fraction", "10%", "Invalid value for '--val-fraction'"),
        ("--seed", "x", "Invalid value for '--seed'"),
    ],
)
def test_option_out_of_range_or_not_a_number_is_one_line_exit_2(
    tiny_registry, tiny_images, capsys, option, value, expected
):
    code, _, err = cli(["run", "tiny", "--data", str(tiny_images), option, value], capsys)
    assert code == 2 and expected in one_line(err)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "tiyn"], "unknown backbone 'tiyn'; did you mean tiny?"),
        (["run"], "name the backbones to run (see `zoo list`) or pass --all"),
        (["run", "tiny", "--all"], "give backbone names or --all, not both"),
        (["run", "--epochs"], "Option '--epochs' requires an argument"),
        (["run", "tiny", "--fast"], "No such option: --fast"),
    ],
)
def test_bad_command_lines_are_one_line_exit_2(tiny_registry, capsys, args, expected):
    code, _, err = cli(args, capsys)
    assert code == 2 and expected in one_line(err)


def test_zoo_alone_prints_help_without_an_error_line(capsys):
    code, out, err = cli([], capsys)
    assert code == 2
    assert "Usage" in out + err and "error:" not in out + err


def test_all_with_only_an_unloadable_backbone_is_a_failed_row_exit_1(
    tmp_path, tiny_images, capsys, monkeypatch
):
    registry = tmp_path / "ghost.toml"
    registry.write_text(registry_text("/nowhere/model", name="ghost"))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    code, out, err = cli(["run", "--all", "--data", str(tiny_images)], capsys)
    assert code == 1
    (line,) = [line for line in err.splitlines() if "failed" in line]
    assert line.startswith("ghost failed: ghost: cannot load /nowhere/model")
    assert "zoo pull ghost" in line and "Traceback" not in err
    assert "ghost" in out and "failed" in out
    assert [(r.backbone, r.status) for r in list_runs()] == [("ghost", "failed")]


def test_all_with_no_backbone_at_all_is_one_line_exit_2(tmp_path, tiny_images, capsys):
    registry = tmp_path / "empty.toml"
    registry.write_text("# no backbones yet\n")
    code, _, err = cli(
        ["--registry", str(registry), "run", "--all", "--data", str(tiny_images)], capsys
    )
    assert code == 2 and "nothing to run: no backbone is available" in one_line(err)


# --- registries, plugins, the store and the home folder ---------------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"[backbones.x]\nplugin = \n", "invalid TOML: Invalid value (at line 2, column 10)"),
        (b"[backbones.x]\npaper = '\xff\xfe'\n", "the registry is not UTF-8 text (byte 23)"),
        (b"x = " + b"[" * 5000, "nested too deeply"),
    ],
)
def test_unreadable_registry_is_one_line_exit_2(tmp_path, capsys, content, expected):
    registry = tmp_path / "registry.toml"
    registry.write_bytes(content)
    code, _, err = cli(["--registry", str(registry), "list"], capsys)
    assert code == 2
    line = one_line(err)
    assert str(registry) in line and expected in line


def test_entry_naming_a_missing_plugin_is_a_one_line_warning(tmp_path, tiny_savedmodel, capsys):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel))
        + registry_text("/m", name="orphan", plugin="nonexistent")
    )
    code, out, err = cli(["--registry", str(registry), "list", "--json"], capsys)
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == ["tiny"]
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: ") and "'orphan'" in line and "'nonexistent'" in line


def test_damaged_run_store_is_one_line_exit_1(zoo_home, capsys):
    zoo_home.mkdir(parents=True)
    (zoo_home / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    code, _, err = cli(["runs"], capsys)
    assert code == 1
    line = one_line(err)
    assert "runs.sqlite: cannot open the run store" in line and "move it aside" in line


def test_zoo_home_that_is_a_file_is_one_line_exit_1(zoo_home, capsys):
    zoo_home.parent.mkdir(parents=True, exist_ok=True)
    zoo_home.write_text("")
    code, _, err = cli(["runs"], capsys)
    assert code == 1
    line = one_line(err)
    assert str(zoo_home) in line and "ZOO_HOME" in line


def test_usage_errors_answer_before_tensorflow_is_imported(tiny_registry):
    code = (
        "import sys; from zoo.cli import main\n"
        "for args in (['run', 'tiny', '--epochs', '0'], ['run', 'tiyn']):\n"
        "    try:\n        main(args)\n    except SystemExit as done:\n"
        "        assert done.code == 2, done.code\n"
        "assert 'tensorflow' not in sys.modules, 'a usage error waited for tensorflow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
