"""The comparison report: PNGs and one self-contained HTML file, looked at in headless Chromium."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import export_tiny_savedmodel, registry_text, run_main
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def two_backbones(tmp_path, tiny_savedmodel, monkeypatch):
    """`tiny` and `wide` (another random projection, more parameters) in the active registry."""
    other = export_tiny_savedmodel(tmp_path / "wide", seed=1)
    registry = tmp_path / "two.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel), params_m=1.5)
        + registry_text(str(other), name="wide", params_m=20.0)
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))


def test_run_of_two_backbones_writes_a_report_that_chromium_shows(
    two_backbones, tiny_images, tmp_path, capsys
):
    args = ["run", "tiny", "wide", "--data", str(tiny_images), "--epochs", "3", "--json"]
    code, out, _ = run_main(args, capsys)
    assert code == 0
    report = json.loads(out)
    page = report["report"]
    assert page and page.endswith("compare.html")
    text = Path(page).read_text()
    ids = [run["run_id"] for run in report["runs"]]
    for run_id, name in zip(ids, ("tiny", "wide")):
        assert f"#{run_id} {name}" in text
    # The verdict in words, with per-class differences against the recommended run.
    assert '<div id="verdict">' in text and "Recommended: " in text
    assert '<table id="class_differences">' in text
    # Where the best and the runner-up differ: the test images only one got right, inlined.
    assert '<div id="gallery">' in text and "only #" in text
    tiles = len(re.findall(r'<img alt="test image" src="data:image/png;base64,', text))
    shown = sum(int(n) for n in re.findall(r"\((\d+) of \d+\)</h3>", text))
    assert tiles == shown
    # Self-contained: four inlined pictures (intervals first), nothing fetched from anywhere.
    assert len(re.findall(r'<img id="\w+" alt="\w+" src="data:image/png;base64,', text)) == 4
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)
    assert "<script" not in text
    for name in ("accuracy_intervals", "accuracy_vs_speed", "per_class_accuracy", "loss_curves"):
        assert (Path(page).parent / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it): the page was not rendered")
    shot = screenshot(page, tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[0] >= 1000
    drawn = (pixels < 235).any(axis=2).mean()
    assert drawn > 0.03, f"the page looks blank ({drawn:.1%} of it drawn)"
    # The page's own text and table are grey: colour comes only from the plots, so it shows
    # that the browser decoded the inlined images (a broken image draws none).
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 80).mean()
    assert colourful > 0.01, f"only {colourful:.2%} of the page in colour: no plot rendered"


def screenshot(page: str, tmp_path) -> str:
    """A full-height headless Chromium screenshot of a local page, offline."""
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--hide-scrollbars",
            "--window-size=1000,2400",
            f"--screenshot={shot}",
            f"file://{page}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return str(shot)


def test_report_compare_on_demand_and_its_bad_input(two_backbones, tiny_images, tmp_path, capsys):
    import zoo

    summary = zoo.run(["tiny", "wide"], data=tiny_images, epochs=2)
    first, second = (result.run_id for result in summary.results)
    again = zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.01).results[0]
    assert again.computed_features == 0  # all cached: this run measured no speed
    out_dir = tmp_path / "cmp"
    code, out, _ = run_main(
        ["report", "--compare", str(first), str(second), str(again.run_id), "--out", str(out_dir)],
        capsys,
    )
    assert code == 0
    written = sorted(path.name for path in out_dir.iterdir())
    assert written == [
        "accuracy_intervals.png",
        "accuracy_vs_speed.png",
        "compare.html",
        "loss_curves.png",
        "per_class_accuracy.png",
    ]
    for name in written:
        assert str(out_dir / name) in out
    page = (out_dir / "compare.html").read_text()
    assert f"(run {first})" in page  # the cached run borrows tiny's speed from the first run
    code, _, err = run_main(["report", str(first), str(second)], capsys)
    assert code == 2 and "--compare" in err and "Traceback" not in err
    code, _, err = run_main(["report", "--compare", "999"], capsys)
    assert code == 2 and "no run with id 999" in err
