"""Finding candidates: the filters and sorts shared by `zoo list`, `run` and `pull`, and offline --all."""

from __future__ import annotations

import socket

import pytest
from conftest import registry_text, run_main

from zoo.catalog.filters import Filters, select_rows
from zoo.errors import UsageError


def _row(name, family="", params=None, top1=None, size=(224, 224), on="", ready=False, **more):
    return {
        "name": name,
        "family": family,
        "params_m": params,
        "imagenet_top1": top1,
        "input_size": list(size),
        "pretrained_on": on,
        "ready": ready,
        "handle": f"https://tfhub.dev/x/{name}/1",
        **more,
    }


ROWS = [
    _row("v2_small", "mobilenet_v2", 2.2, 71.8, on="imagenet-1k", ready=True),
    _row("v3_large", "mobilenet_v3", 4.2, 75.2, on="imagenet-1k"),
    _row("effv2_s", "efficientnet_v2", 21.5, 83.9, (384, 384), "imagenet-21k"),
    _row("effv2_b0", "efficientnet_v2", 7.1, None, on="imagenet-1k"),
    _row("bare", "", None, None, description="Feature vectors of images with Inception V3"),
]


def _names(filters: Filters, sort: str = "name") -> list[str]:
    return [row["name"] for row in select_rows(ROWS, filters, sort)]


def test_family_is_the_family_or_its_versions():
    assert _names(Filters(family="mobilenet")) == ["v2_small", "v3_large"]
    assert _names(Filters(family="mobilenet_v2")) == ["v2_small"]
    assert _names(Filters(family="mobilenet-v3")) == ["v3_large"]
    assert _names(Filters(family="mobile")) == []  # a family, not a substring


def test_numbers_leave_out_what_is_not_stated():
    assert _names(Filters(max_params=8)) == ["effv2_b0", "v2_small", "v3_large"]
    assert _names(Filters(min_top1=75)) == ["effv2_s", "v3_large"]
    assert _names(Filters(family="efficientnet_v2", max_params=20)) == ["effv2_b0"]


def test_size_pretraining_ready_and_search():
    assert _names(Filters(input_size="384")) == ["effv2_s"]
    assert _names(Filters(input_size="224x224")) == ["bare", "effv2_b0", "v2_small", "v3_large"]
    assert _names(Filters(pretrained_on="ImageNet-21k")) == ["effv2_s"]
    assert _names(Filters(ready=True)) == ["v2_small"]
    assert _names(Filters(search="inception v3")) == ["bare"]
    assert _names(Filters(search="tfhub.dev v3_")) == ["v3_large"]


def test_sorts_put_unknown_figures_last():
    assert _names(Filters(), "top1") == ["effv2_s", "v3_large", "v2_small", "bare", "effv2_b0"]
    assert _names(Filters(), "params") == ["v2_small", "v3_large", "effv2_b0", "effv2_s", "bare"]
    with pytest.raises(UsageError, match="--sort must be one of name, top1, params"):
        select_rows(ROWS, Filters(), "speed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--input-size", "big"], "--input-size must be a side or HEIGHTxWIDTH"),
        (["list", "--max-params", "-1"], "--max-params must be a number of at least 0"),
        (["list", "--sort", "speed"], "--sort must be one of name, top1, params"),
        (["run", "mobilenet_v2", "--family", "resnet"], "give backbone names or filters, not both"),
        (["run", "--family", "nosuch"], "no backbone matches those filters"),
        (["pull", "--search", "no such words"], "no backbone matches those filters"),
    ],
)
def test_bad_filters_are_one_line_exit_2(capsys, args, message):
    code, _, err = run_main(args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_run_says_what_the_filters_selected(capsys, monkeypatch):
    """Selection happens before anything loads: an unknown --data answers after it."""
    code, _, err = run_main(
        ["run", "--family", "efficientnet_v2", "--max-params", "9", "--data", "/nowhere"], capsys
    )
    lines = err.strip().splitlines()
    assert lines[0] == (
        "selected 2 backbones: efficientnet_v2_imagenet1k_b0, efficientnet_v2_imagenet1k_b1"
    )
    assert code == 2 and "/nowhere" in lines[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ready_when_offline_asks_the_hub_once(tmp_path, tiny_savedmodel, monkeypatch):
    from zoo.api import ready_when_offline
    from zoo.catalog.plugins import load_catalog

    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel))
        + registry_text("https://tfhub.dev/google/nowhere/1", name="remote")
        + registry_text("/no/such/folder", name="lost")  # local: it fails as it always did
    )
    backbones = list(load_catalog(registry).backbones.values())
    monkeypatch.setenv("ZOO_HUB_PROBE", f"127.0.0.1:{_closed_port()}")
    kept, waiting = ready_when_offline(backbones)
    assert [b.name for b in kept] == ["lost", "tiny"] and [b.name for b in waiting] == ["remote"]
    with socket.socket() as hub:
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        monkeypatch.setenv("ZOO_HUB_PROBE", f"127.0.0.1:{hub.getsockname()[1]}")
        assert ready_when_offline(backbones) == (backbones, [])


def test_offline_run_all_runs_the_ready_and_says_how_to_pull_the_rest(
    tmp_path, tiny_savedmodel, tiny_images, monkeypatch, capsys
):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel))
        + registry_text("https://tfhub.dev/google/nowhere/1", name="remote")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    monkeypatch.setenv("ZOO_HUB_PROBE", f"127.0.0.1:{_closed_port()}")
    code, out, err = run_main(
        ["run", "--all", "--data", str(tiny_images), "--epochs", "1", "--engine", "tensorflow"],
        capsys,
    )
    assert code == 0, err
    assert (
        "offline: the model hub is unreachable; --all runs 1 backbone ready offline and skips "
        "1 backbone not downloaded yet" in err
    )
    assert "zoo pull --family NAME" in err
    assert "tiny" in out and "remote" not in out


def test_the_python_api_takes_the_same_filters():
    import zoo

    names = [row["name"] for row in zoo.list_backbones(family="efficientnet_v2", max_params=9)]
    assert names == ["efficientnet_v2_imagenet1k_b0", "efficientnet_v2_imagenet1k_b1"]
    best = zoo.list_backbones(pretrained_on="imagenet-21k", sort="top1")[0]
    assert best["name"] == "efficientnet_v2_imagenet21k_ft1k_l" and best["imagenet_top1"] == 86.9
    with pytest.raises(TypeError):
        zoo.list_backbones(colour="red")
