"""Turn a backbone's handle into a local SavedModel folder: found cached, downloaded, or built.

Downloads go through tensorflow_hub's own resolver (atomic: temp folder + rename, and it refuses
archive members that escape their folder); zoo adds one persistent cache, fallback handles,
a network timeout, and one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import urllib.error
import zlib
from pathlib import Path
from urllib.parse import unquote, urlparse

from zoo.backbone import Backbone
from zoo.errors import BackboneUnavailable
from zoo.home import atomic_dir, converted_dir, hub_cache_dir

NETWORK_TIMEOUT_S = 30.0


def configure_hub_cache() -> None:
    """Point TF Hub at zoo's persistent cache unless the user chose a folder themselves."""
    os.environ.setdefault("TFHUB_CACHE_DIR", str(hub_cache_dir()))


def is_remote(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def local_path(handle: str) -> Path | None:
    """The folder a local handle (path or file:// URL) names; None for other handles."""
    if handle.startswith("file://"):
        return Path(unquote(urlparse(handle).path))
    if handle.startswith(("/", "~")):
        return Path(handle).expanduser()
    return None


def download_dir(handle: str) -> Path:
    """Where tensorflow_hub caches a URL handle (its own naming: sha1 of the handle)."""
    return hub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def built_dir(handle: str) -> Path:
    """Where a `zoo:NAME` backbone's plugin-built SavedModel lives."""
    return converted_dir() / handle.removeprefix("zoo:")


def cached_location(handle: str) -> Path | None:
    """The local folder holding `handle` right now, without touching the network."""
    if handle.startswith("zoo:"):
        folder = built_dir(handle)
    elif is_remote(handle):
        folder = download_dir(handle)
    else:
        folder = local_path(handle)
    return folder if folder is not None and (folder / "saved_model.pb").is_file() else None


def is_ready(backbone: Backbone) -> bool:
    """Can this backbone be loaded with no network?"""
    if backbone.make_layer is not None:
        return True
    return any(cached_location(handle) for handle in backbone.handles)


def resolve(backbone: Backbone) -> Path:
    """A local SavedModel folder for the backbone: cached, else downloaded or built now."""
    reasons = []
    for handle in backbone.handles:
        try:
            return cached_location(handle) or _fetch(backbone, handle)
        except BackboneUnavailable as error:
            reasons.append(str(error))
    raise BackboneUnavailable(
        f"{backbone.name}: cannot load {backbone.handle} ({reasons[0]}); run `zoo pull "
        f"{backbone.name}` where there is a network, or set its handle to a local SavedModel folder"
    )


def forget(handle: str) -> None:
    """Drop a cached download that turned out not to load, so the next try fetches it again."""
    if is_remote(handle):
        shutil.rmtree(download_dir(handle), ignore_errors=True)


def _fetch(backbone: Backbone, handle: str) -> Path:
    if handle.startswith("zoo:"):
        return _build(backbone, handle)
    if is_remote(handle):
        return _download(handle)
    raise BackboneUnavailable(f"no SavedModel (saved_model.pb) in {local_path(handle)}")


def _build(backbone: Backbone, handle: str) -> Path:
    if backbone.build_savedmodel is None:
        raise BackboneUnavailable(f"plugin {backbone.plugin!r} gives no way to build {handle}")
    final = built_dir(handle)
    with atomic_dir(final) as scratch:
        backbone.build_savedmodel(scratch)
    return final


def _download(handle: str) -> Path:
    configure_hub_cache()
    import tensorflow_hub as hub

    try:
        with _network_timeout(NETWORK_TIMEOUT_S):
            folder = Path(hub.resolve(handle))
    except urllib.error.HTTPError as error:
        raise BackboneUnavailable(f"HTTP {error.code} {error.reason} from {handle}") from None
    except urllib.error.URLError as error:
        raise BackboneUnavailable(f"network unreachable: {error.reason}") from None
    except TimeoutError:
        raise BackboneUnavailable(f"no answer within {NETWORK_TIMEOUT_S:.0f} s") from None
    except ValueError as error:  # tensorflow_hub refuses members outside the archive's folder
        raise BackboneUnavailable(f"archive refused: {error}") from None
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise BackboneUnavailable(f"download is not a valid SavedModel archive: {error}") from None
    if not (folder / "saved_model.pb").is_file():
        forget(handle)
        raise BackboneUnavailable(f"the archive from {handle} holds no saved_model.pb")
    return folder


@contextlib.contextmanager
def _network_timeout(seconds: float):
    """tensorflow_hub's urlopen has no timeout; a silent network would hang a run forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
