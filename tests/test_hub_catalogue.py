"""The TF Hub catalogue: its generator over real tfhub.dev pages, its check, and the committed file."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import run_main

from zoo.catalog.registry import (
    catalogue_path,
    default_registry_path,
    load_registry,
    load_registry_file,
)

ROOT = Path(__file__).parents[1]
SAMPLES = Path(__file__).parent / "data" / "tfhub_docs"  # real pages, copied unchanged
SCRIPT = ROOT / "scripts" / "make_hub_catalogue.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_hub_catalogue", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


generator = _generator()


def _generate(tmp_path: Path, checkout: Path = SAMPLES, hand_kept: Path | None = None) -> Path:
    out = tmp_path / "catalogue.toml"
    args = [str(checkout), "--out", str(out), "--report", str(tmp_path / "skipped.txt")]
    if hand_kept is not None:
        args += ["--hand-kept", str(hand_kept)]
    assert generator.main(args) == 0
    return out


def test_the_same_pages_give_the_same_bytes(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = (_generate(tmp_path / run).read_bytes() for run in "ab")
    assert first == second and first.startswith(b"# GENERATED FILE: do not edit.")
    assert b"python scripts/make_hub_catalogue.py TFHUB_DEV_CHECKOUT" in first
    assert str(tmp_path).encode() not in first  # no trace of where the checkout lay


def test_the_facts_are_the_pages_own(tmp_path):
    entries = load_registry_file(_generate(tmp_path))  # validated like zoo's registry
    facts = {
        name: (e.fields["input_size"], e.fields["feature_dim"], e.fields["input_range"])
        for name, e in entries.items()
    }
    assert facts == {
        # "fixed to `height` x `width` = 128 x 128 pixels", "`num_features` = 1280"
        "mobilenet_v2_050_128": ([128, 128], 1280, [0.0, 1.0]),
        "mobilenet_v3_small_075_224": ([224, 224], 1024, [0.0, 1.0]),
        "efficientnet_v2_imagenet1k_b0": ([224, 224], 1280, [0.0, 1.0]),
        "efficientnet_v2_imagenet21k_ft1k_s": ([384, 384], 1280, [0.0, 1.0]),
        # "input tensor of shape [batch size, 224, 224, 3]", "scaled to [0, 1]"
        "cropnet_concat": ([224, 224], 1280, [0.0, 1.0]),
    }
    b0 = entries["efficientnet_v2_imagenet1k_b0"].fields
    assert (
        b0["handle"]
        == "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2"
    )
    assert (b0["imagenet_top1"], b0["params_m"], b0["family"]) == (78.7, 7.1, "efficientnet_v2")
    assert b0["pretrained_on"] == "imagenet-1k" and b0["fine_tunable"] is True
    assert (
        b0["doc"]
        == "assets/docs/google/models/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2.md"
    )
    # Fine-tuned on ImageNet-1k: its top-1 is tabulated, its parameter count is not.
    ft1k = entries["efficientnet_v2_imagenet21k_ft1k_s"].fields
    assert ft1k["imagenet_top1"] == 84.9 and "params_m" not in ft1k
    assert ft1k["pretrained_on"] == "imagenet-21k"
    assert entries["mobilenet_v3_small_075_224"].fields["imagenet_top1"] == 65.4
    # Stated nowhere on these pages: left empty, never guessed.
    for name in ("mobilenet_v2_050_128", "cropnet_concat"):
        assert "imagenet_top1" not in entries[name].fields
        assert "params_m" not in entries[name].fields


def test_skipped_pages_say_why(tmp_path):
    _generate(tmp_path)
    report = (tmp_path / "skipped.txt").read_text()
    docs = "assets/docs/google/models"
    for line in (
        f"{docs}/imagenet/amoebanet_a_n18_f448/feature_vector/1.md: not a TF2 SavedModel (format: hub)",
        f"{docs}/imagenet/mobilenet_v2_050_128/classification/5.md: not an image feature vector (task: image-classification)",
        f"{docs}/imagenet/mobilenet_v2_050_128/feature_vector/4.md: older version (latest is 5)",
        f"{docs}/bit/m-r50x1/1.md: no stated input size",
        "assets/docs/tensorflow/models/efficientnet/b3/feature-vector/1.md: no stated feature size",
    ):
        assert line in report.splitlines()
    assert report.startswith("5 entries; 5 pages skipped:")


def test_hand_kept_entries_win(tmp_path):
    hand_kept = tmp_path / "registry.toml"
    hand_kept.write_text(
        "[backbones.mine]\nplugin = 'hub'\ninput_size = [128, 128]\nfeature_dim = 1280\n"
        "handle = 'https://tfhub.dev/google/imagenet/mobilenet_v2_050_128/feature_vector/5'\n"
    )
    entries = load_registry_file(_generate(tmp_path, hand_kept=hand_kept))
    assert "mobilenet_v2_050_128" not in entries and len(entries) == 4
    assert "kept by hand in registry.toml as mine" in (tmp_path / "skipped.txt").read_text()


def test_check_finds_a_size_that_differs_from_the_page(tmp_path, capsys):
    out = _generate(tmp_path)
    assert generator.main([str(SAMPLES), "--check", "--out", str(out)]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    out.write_text(out.read_text().replace("input_size = [384, 384]", "input_size = [380, 380]"))
    assert generator.main([str(SAMPLES), "--check", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert (
        "efficientnet_v2_imagenet21k_ft1k_s: input_size is [380, 380], its page states [384, 384]"
        in printed
    )
    assert "1 mismatches" not in printed  # the usage example's m.build() disagrees too: 2
    assert "2 mismatches" in printed


def test_check_reports_a_page_that_is_gone(tmp_path, capsys):
    out = _generate(tmp_path)
    checkout = tmp_path / "checkout"
    shutil.copytree(SAMPLES, checkout)
    (checkout / "assets/docs/google/models/cropnet/feature_vector/concat/1.md").unlink()
    assert generator.main([str(checkout), "--check", "--out", str(out)]) == 1
    assert "cropnet_concat: its doc page" in capsys.readouterr().out


def test_the_committed_catalogue_joins_zoos_registry():
    catalogue = load_registry_file(catalogue_path(), default_plugin="hub")
    assert len(catalogue) >= 80
    merged = load_registry()
    hand_kept = load_registry_file(default_registry_path())
    assert len(merged) == len(hand_kept) + len(catalogue)
    handles = [e.fields["handle"] for e in merged.values()]
    assert len(handles) == len(set(handles))
    # The five hub entries kept by hand keep their names and handles (stored runs name them).
    assert {
        name: merged[name].fields["handle"]
        for name in ("resnet50v2", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_large")
    } == {
        "resnet50v2": "https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5",
        "efficientnet_b0": "https://tfhub.dev/tensorflow/efficientnet/b0/feature-vector/1",
        "mobilenet_v2": "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
        "mobilenet_v3_large": "https://tfhub.dev/google/imagenet/mobilenet_v3_large_100_224/feature_vector/5",
    }
    assert merged["mobilenet_v3_small"].source == hand_kept["mobilenet_v3_small"].source


def test_a_given_registry_stands_alone(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(
        "[backbones.x]\nplugin = 'hub'\nhandle = '/m'\ninput_size = [8, 8]\nfeature_dim = 3\n"
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    assert list(load_registry()) == ["x"]


FULL_CHECKOUT = Path(os.environ.get("TFHUB_DEV_CHECKOUT", "/nonexistent"))


@pytest.mark.skipif(
    not (FULL_CHECKOUT / "assets" / "docs").is_dir(), reason="set TFHUB_DEV_CHECKOUT to run it"
)
def test_committed_catalogue_matches_a_full_checkout(tmp_path, capsys):
    """Over a full tfhub.dev checkout: zero mismatches, and regenerating gives the same bytes."""
    assert generator.main([str(FULL_CHECKOUT), "--check", "--out", str(catalogue_path())]) == 0
    regenerated = _generate(tmp_path, FULL_CHECKOUT)
    assert regenerated.read_bytes() == catalogue_path().read_bytes()


def test_list_filters_the_catalogue(capsys):
    import json

    code, out, _ = run_main(
        ["list", "--family", "efficientnet_v2", "--max-params", "20", "--json"], capsys
    )
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == [
        f"efficientnet_v2_imagenet1k_b{i}" for i in range(4)
    ]
    code, out, _ = run_main(["list", "--family", "mobilenet_v3", "--sort", "top1"], capsys)
    assert code == 0 and "Backbones (" in out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows[:3] == ["mobilenet_v3_large", "mobilenet_v3_large_075_224", "mobilenet_v3_small"]
