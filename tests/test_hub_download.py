"""The hub path end to end, against a TF Hub look-alike of our own on 127.0.0.1.

First load downloads into the cache; later loads need no network; broken downloads (truncated,
corrupt, escaping the cache, HTTP errors, no network) are each one line and leave nothing behind
that could pass for a cached backbone; a fallback handle is used when the main one fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from pathlib import Path

import pytest
from conftest import export_tiny_savedmodel, registry_text
from hub_server import (
    HubServer,
    archive_cut_before,
    archive_with_symlink,
    hub_archive,
)

import zoo
from zoo.catalog.plugins import load_catalog
from zoo.cli import main
from zoo.errors import BackboneUnavailable
from zoo.extraction.layers import check_feature_size
from zoo.sources import hub
from zoo.sources.hub import is_ready, resolve

PATH = "/google/tiny/feature_vector/1"


@pytest.fixture
def hub_server():
    server = HubServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def good_archive(tiny_savedmodel) -> bytes:
    return hub_archive(tiny_savedmodel)


def write_registry(tmp_path: Path, handle: str, **extra) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(registry_text(handle, **extra))
    return path


def tiny_backbone(tmp_path: Path, handle: str, **extra):
    return load_catalog(write_registry(tmp_path, handle, **extra)).get("tiny")


def cache_folder(cache: Path, handle: str) -> Path:
    return cache / hashlib.sha1(handle.encode("utf8")).hexdigest()


def leftovers(cache: Path) -> list[str]:
    """Everything in the hub cache: after a failed download there must be nothing at all."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# 1. The first load downloads and caches, where the cache belongs.


def test_first_load_downloads_into_zoo_home_and_caches(
    hub_server, good_archive, tmp_path, zoo_home
):
    hub_server.serve(PATH, good_archive)
    handle = hub_server.url(PATH)
    backbone = tiny_backbone(tmp_path, handle)
    assert not is_ready(backbone)

    check_feature_size(backbone)

    assert is_ready(backbone)
    assert hub_server.hits[PATH] == 1
    assert hub_server.queries == ["tf-hub-format=compressed"]  # the TF Hub download protocol
    folder = cache_folder(zoo_home / "hub", handle)
    assert (folder / "saved_model.pb").is_file()
    assert (folder / "variables" / "variables.index").is_file()
    assert os.environ["TFHUB_CACHE_DIR"] == str(zoo_home / "hub")
    assert resolve(backbone) == folder
    check_feature_size(backbone)
    assert hub_server.hits[PATH] == 1  # loaded from the cache, not downloaded again


def test_users_tfhub_cache_dir_wins(hub_server, good_archive, tmp_path, zoo_home, monkeypatch):
    users_cache = tmp_path / "my-tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(users_cache))
    hub_server.serve(PATH, good_archive)
    handle = hub_server.url(PATH)
    backbone = tiny_backbone(tmp_path, handle)

    assert resolve(backbone) == cache_folder(users_cache, handle)

    assert (cache_folder(users_cache, handle) / "saved_model.pb").is_file()
    assert not (zoo_home / "hub").exists()
    assert os.environ["TFHUB_CACHE_DIR"] == str(users_cache)
    assert is_ready(backbone)


# 2. Once cached, no network is needed: not to load, not to train.


def test_cached_backbone_loads_and_runs_with_the_server_stopped(
    hub_server, good_archive, tmp_path, tiny_images
):
    hub_server.serve(PATH, good_archive)
    registry = write_registry(tmp_path, hub_server.url(PATH))
    check_feature_size(load_catalog(registry).get("tiny"))
    hub_server.stop()

    backbone = load_catalog(registry).get("tiny")
    assert is_ready(backbone)
    check_feature_size(backbone)
    summary = zoo.run(
        ["tiny"],
        train=tiny_images / "train",
        test=tiny_images / "test",
        registry=registry,
        epochs=1,
    )

    (result,) = summary.results
    assert result.ok, result.reason
    assert result.metrics["test_images"] == 15
    assert hub_server.hits[PATH] == 1


# 3. A broken download raises one line, leaves nothing that passes for a cached backbone,
#    and the next try downloads again.

BROKEN = {
    "cut mid-file": lambda good, model: good[: len(good) // 2],
    "cut between members": lambda good, model: archive_cut_before(model, "./variables"),
    "connection dropped": lambda good, model: good[: len(good) // 2],
    "corrupt": lambda good, model: os.urandom(len(good)),
    "not gzip": lambda good, model: b"<html>Sign in to continue</html>",
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_archive_is_one_line_leaves_nothing_and_is_retried(
    kind, hub_server, good_archive, tiny_savedmodel, tmp_path, zoo_home
):
    body = BROKEN[kind](good_archive, tiny_savedmodel)
    announced = len(good_archive) if kind == "connection dropped" else None
    hub_server.serve(PATH, body, announced_length=announced)
    handle = hub_server.url(PATH)
    backbone = tiny_backbone(tmp_path, handle)

    with pytest.raises(BackboneUnavailable) as error:
        check_feature_size(backbone)

    message = one_line(error)
    assert message.startswith("tiny: cannot load ") and handle in message
    assert not is_ready(backbone)
    assert leftovers(zoo_home / "hub") == []

    hub_server.serve(PATH, good_archive)
    check_feature_size(backbone)
    assert is_ready(backbone)
    assert hub_server.hits[PATH] == 2


# 4. An archive may not write outside its own folder.


@pytest.mark.parametrize("member", ["../escape.txt", "variables/../../escape.txt"])
def test_member_escaping_the_cache_folder_is_refused(
    member, hub_server, tiny_savedmodel, tmp_path, zoo_home
):
    hub_server.serve(PATH, hub_archive(tiny_savedmodel, extra={member: b"gotcha"}))
    backbone = tiny_backbone(tmp_path, hub_server.url(PATH))

    with pytest.raises(BackboneUnavailable) as error:
        resolve(backbone)

    assert "archive refused" in one_line(error) and "escape.txt" in str(error.value)
    assert list(tmp_path.rglob("escape.txt")) == []
    assert leftovers(zoo_home / "hub") == []
    assert not is_ready(backbone)


def test_symlink_member_is_refused(hub_server, tiny_savedmodel, tmp_path, zoo_home):
    hub_server.serve(PATH, archive_with_symlink(tiny_savedmodel, "passwords", "/etc/passwd"))
    backbone = tiny_backbone(tmp_path, hub_server.url(PATH))

    with pytest.raises(BackboneUnavailable) as error:
        resolve(backbone)

    assert "archive refused" in one_line(error)
    assert leftovers(zoo_home / "hub") == []


# 5. HTTP errors: one clear line with the code, from Python and from the CLI.


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_one_line_with_the_code(status, hub_server, tmp_path, zoo_home):
    hub_server.serve(PATH, b"nope", status=status)
    handle = hub_server.url(PATH)

    with pytest.raises(BackboneUnavailable) as error:
        resolve(tiny_backbone(tmp_path, handle))

    message = one_line(error)
    assert f"HTTP {status}" in message and handle in message
    # A 404 means the handle is wrong; a 500 is the server's trouble, so retrying later may work.
    fix = "check its handle (`zoo show tiny`)" if status == 404 else "zoo pull tiny"
    assert fix in message
    assert leftovers(zoo_home / "hub") == []


@pytest.mark.parametrize("status", [404, 500])
def test_cli_pull_reports_http_error_without_traceback(
    status, hub_server, tmp_path, monkeypatch, capsys
):
    hub_server.serve(PATH, b"nope", status=status)
    monkeypatch.setenv("ZOO_REGISTRY", str(write_registry(tmp_path, hub_server.url(PATH))))

    with pytest.raises(SystemExit) as done:
        main(["pull", "tiny"])

    assert done.value.code == 1
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "Traceback" not in printed
    assert f"HTTP{status}" in re.sub(r"[\s│]+", "", printed)  # the table may fold the reason


# 6. A fallback handle is used when the main one fails, and its cache is used from then on.


def test_fallback_handle_loads_when_the_main_handle_404s(
    hub_server, good_archive, tmp_path, zoo_home
):
    hub_server.serve("/kaggle/tiny/1", good_archive)
    fallback = hub_server.url("/kaggle/tiny/1")
    backbone = tiny_backbone(tmp_path, hub_server.url(PATH), fallback_handles=[fallback])

    check_feature_size(backbone)

    assert hub_server.hits == {PATH: 1, "/kaggle/tiny/1": 1}
    assert is_ready(backbone)
    assert resolve(backbone) == cache_folder(zoo_home / "hub", fallback)
    check_feature_size(backbone)
    assert hub_server.hits == {PATH: 1, "/kaggle/tiny/1": 1}  # the cached fallback is used first


# 7. No network and nothing cached: a quick, clear refusal.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fails_fast(load, backbone) -> str:
    """`load(backbone)` raises BackboneUnavailable within 10 s; its one-line message."""
    started = time.perf_counter()
    with pytest.raises(BackboneUnavailable) as error:
        load(backbone)
    assert time.perf_counter() - started < 10
    return one_line(error)


def test_unreachable_handle_fails_fast_naming_backbone_handle_and_fix(tmp_path, zoo_home):
    handle = f"http://127.0.0.1:{free_port()}/google/tiny/feature_vector/1"
    message = fails_fast(check_feature_size, tiny_backbone(tmp_path, handle))
    assert message.startswith("tiny: ") and handle in message
    assert "zoo pull tiny" in message and "local SavedModel folder" in message
    assert leftovers(zoo_home / "hub") == []


def test_silent_server_times_out(tmp_path, zoo_home, monkeypatch):
    monkeypatch.setattr(hub, "NETWORK_TIMEOUT_S", 1.0)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        handle = f"http://127.0.0.1:{silent.getsockname()[1]}/google/tiny/feature_vector/1"
        message = fails_fast(resolve, tiny_backbone(tmp_path, handle))

    assert "no answer within 1 s" in message and "zoo pull tiny" in message
    assert leftovers(zoo_home / "hub") == []


# 6. Catalogue entries load through the same path: one of each kind of page the generator reads.


@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v2_050_128",  # "`height` x `width` = 128 x 128", "`num_features` = 1280"
        "cropnet_concat",  # "input tensor of shape [batch size, 224, 224, 3]", "[batch size, 1280]"
        "efficientnet_v2_imagenet21k_ft1k_s",  # 384 x 384, ImageNet-21k, a tabulated top-1
    ],
)
def test_a_catalogue_entry_loads_from_the_hub_under_its_own_path(
    name, hub_server, tmp_path, monkeypatch
):
    """A tiny SavedModel shaped like the entry (its feature size), served under the entry's
    own tfhub.dev path: downloaded, cached and checked with the entry's facts unchanged."""
    import dataclasses
    from urllib.parse import urlparse

    entry = load_catalog().get(name)
    path = urlparse(entry.handle).path
    model = export_tiny_savedmodel(tmp_path / "model", feature_dim=entry.feature_dim)
    hub_server.serve(path, hub_archive(model))
    served = dataclasses.replace(entry, handle=hub_server.url(path), fallback_handles=())

    check_feature_size(served)  # builds the hub.KerasLayer at the entry's input size

    assert is_ready(served) and hub_server.hits[path] == 1
