"""Turn a backbone's handle into a local SavedModel folder: found cached, downloaded, or built.

Downloads go through tensorflow_hub's own resolver (atomic: temp folder + rename, and it refuses
archive members that escape their folder); zoo adds one persistent cache, fallback handles,
a network timeout, a check that the download arrived whole, and one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import inspect
import os
import shutil
import socket
import tarfile
import urllib.error
import zlib
from pathlib import Path

from zoo.catalog.backbone import Backbone
from zoo.catalog.handles import BUILT, BUILT_PREFIX, REMOTE, parse_handle
from zoo.errors import BackboneUnavailable
from zoo.home import atomic_dir, converted_dir, hub_cache_dir

NETWORK_TIMEOUT_S = 30.0
BUILD_STAMP = ".zoo-build"  # in a built SavedModel's folder: what built it (`build_identity`)


def configure_hub_cache() -> None:
    """Point TF Hub at zoo's persistent cache unless the user chose a folder themselves."""
    os.environ.setdefault("TFHUB_CACHE_DIR", str(hub_cache_dir()))


def is_remote(handle: str) -> bool:
    return parse_handle(handle).kind == REMOTE


def local_path(handle: str) -> Path | None:
    """The folder a local handle (path or file:// URL) names; None for other handles."""
    return parse_handle(handle).path


def download_dir(handle: str) -> Path:
    """Where tensorflow_hub caches a URL handle (its own naming: sha1 of the handle)."""
    return hub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def built_dir(handle: str) -> Path:
    """Where a `zoo:NAME` backbone's plugin-built SavedModel lives: always inside converted/.

    The registry refuses a NAME that is not a plain name; this guards handles that plugins
    register directly.
    """
    root = converted_dir()
    folder = root / handle.removeprefix(BUILT_PREFIX)
    if folder.parent != root or folder.name in ("", ".", ".."):
        raise BackboneUnavailable(
            f"handle {handle!r} names a folder outside {root}; use zoo:NAME with a plain name"
        )
    return folder


def cached_location(handle: str) -> Path | None:
    """The local folder holding `handle` right now, without touching the network."""
    if parse_handle(handle).kind == BUILT:
        try:
            folder = built_dir(handle)
        except BackboneUnavailable:  # not a plain name: never cached (building it says why)
            return None
    elif is_remote(handle):
        folder = download_dir(handle)
    else:
        folder = local_path(handle)
    return folder if folder is not None and (folder / "saved_model.pb").is_file() else None


def cached_folder(backbone: Backbone) -> Path | None:
    """The first of the backbone's handles that is on disk now, without touching the network.

    A SavedModel its plugin built with another build than today's counts as absent: it is built
    again (`build_identity`).
    """
    for handle in backbone.handles:
        folder = cached_location(handle)
        if folder is not None and not _stale_build(backbone, handle, folder):
            return folder
    return None


def build_identity(backbone: Backbone) -> str:
    """What a `zoo:NAME` SavedModel was built by: the plugin's declared `build_version`, else its
    version and the source of its `build_savedmodel`. Stored beside the model it built."""
    if backbone.build_version:
        return f"build_version {backbone.build_version}"
    builder = backbone.build_savedmodel
    try:
        source = inspect.getsource(builder)
    except (OSError, TypeError):  # no source at hand (a builtin, a partial): its name, at least
        source = getattr(builder, "__qualname__", type(builder).__qualname__)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return f"plugin {backbone.plugin} {backbone.plugin_version}; build_savedmodel source {digest}"


def _stale_build(backbone: Backbone, handle: str, folder: Path) -> bool:
    if parse_handle(handle).kind != BUILT or backbone.build_savedmodel is None:
        return False
    try:
        built_by = (folder / BUILD_STAMP).read_text(encoding="utf-8")
    except (OSError, ValueError):  # built before zoo kept the stamp
        return True
    return built_by != build_identity(backbone)


def is_ready(backbone: Backbone) -> bool:
    """Can this backbone be loaded with no network (cached, or built locally by its plugin)?"""
    return (
        backbone.make_layer is not None or is_built(backbone) or cached_folder(backbone) is not None
    )


def resolve(backbone: Backbone) -> Path:
    """A local SavedModel folder: any handle already cached, else the first one fetched now."""
    cached = cached_folder(backbone)
    if cached is not None:
        return cached
    reasons = []
    for handle in backbone.handles:
        try:
            return _fetch(backbone, handle)
        except BackboneUnavailable as error:
            reasons.append(str(error))
    if parse_handle(backbone.handle).kind == BUILT and backbone.build_savedmodel is None:
        fix = (  # no network would help: only the plugin can build it
            f"plugin {backbone.plugin!r} must pass build_savedmodel= to zoo.Backbone for a zoo: "
            "handle (docs/plugins.md), or set the handle to a local SavedModel folder"
        )
    elif reasons[0].startswith("HTTP 4"):  # the server answered: the handle itself is wrong
        fix = (
            f"check its handle (`zoo show {backbone.name}`) or set it to a local SavedModel folder"
        )
    else:
        fix = (
            f"run `zoo pull {backbone.name}` where there is a network, "
            "or set its handle to a local SavedModel folder"
        )
    raise BackboneUnavailable(
        f"{backbone.name}: cannot load {backbone.handle} ({reasons[0]}); {fix}"
    )


def forget(handle: str) -> None:
    """Drop a cached download that turned out not to load, so the next try fetches it again."""
    if is_remote(handle):
        shutil.rmtree(download_dir(handle), ignore_errors=True)


def _fetch(backbone: Backbone, handle: str) -> Path:
    if parse_handle(handle).kind == BUILT:
        return _build(backbone, handle)
    if is_remote(handle):
        return _download(handle)
    raise BackboneUnavailable(f"no SavedModel (saved_model.pb) in {local_path(handle)}")


def is_built(backbone: Backbone) -> bool:
    """Does the backbone's plugin build its SavedModel (a `zoo:NAME` handle)?"""
    return backbone.build_savedmodel is not None and parse_handle(backbone.handle).kind == BUILT


def build(backbone: Backbone) -> Path:
    """Build the backbone's SavedModel afresh (`zoo pull --rebuild`), replacing any earlier one."""
    try:
        return _build(backbone, backbone.handle)
    except BackboneUnavailable as error:
        raise BackboneUnavailable(
            f"{backbone.name}: cannot build {backbone.handle} ({error})"
        ) from None


def _build(backbone: Backbone, handle: str) -> Path:
    if backbone.build_savedmodel is None:
        raise BackboneUnavailable(f"plugin {backbone.plugin!r} gives no way to build {handle}")
    final = built_dir(handle)
    with atomic_dir(final) as scratch:
        backbone.build_savedmodel(scratch)
        (scratch / BUILD_STAMP).write_text(build_identity(backbone), encoding="utf-8")
        if final.exists():  # an earlier build: replaced only now that this one succeeded
            aside = final.with_name(f".tmp-{final.name}-stale-{os.getpid()}")
            os.replace(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
    return final


def _download(handle: str) -> Path:
    configure_hub_cache()
    try:
        with _network_timeout(NETWORK_TIMEOUT_S):
            folder = Path(_hub_resolve(handle))
    except urllib.error.HTTPError as error:
        raise BackboneUnavailable(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise BackboneUnavailable(f"network unreachable: {error.reason}") from None
    except TimeoutError:
        raise BackboneUnavailable(f"no answer within {NETWORK_TIMEOUT_S:.0f} s") from None
    except ValueError as error:  # tensorflow_hub refuses members outside the archive's folder
        raise BackboneUnavailable(f"archive refused: {error}") from None
    except (EOFError, http.client.HTTPException) as error:
        raise BackboneUnavailable(f"download incomplete: {error}") from None
    except (OSError, tarfile.TarError, zlib.error) as error:
        raise BackboneUnavailable(f"download is not a valid SavedModel archive: {error}") from None
    if not (folder / "saved_model.pb").is_file():
        forget(handle)
        raise BackboneUnavailable(f"the archive from {handle} holds no saved_model.pb")
    return folder


def _hub_resolve(handle: str) -> str:
    """tensorflow_hub's resolver; its compressed downloads read through `_WholeDownload`."""
    import tensorflow_hub as hub
    from tensorflow_hub.compressed_module_resolver import HttpCompressedFileResolver

    resolver = HttpCompressedFileResolver()
    if not resolver.is_supported(handle):  # e.g. TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED
        return hub.resolve(handle)
    urlopen = resolver._call_urlopen  # tensorflow_hub's hook for opening the URL
    resolver._call_urlopen = lambda request: _WholeDownload(urlopen(request))
    return resolver(handle)


class _WholeDownload:
    """A download stream that raises EOFError when it ends early, instead of just ending.

    tarfile takes a stream that stops between two members for a whole archive, so a cut
    connection could otherwise put a SavedModel without its variables into the cache.
    """

    def __init__(self, response) -> None:
        self._response = response
        length = response.headers.get("Content-Length")
        self._expected = int(length) if length and length.isdigit() else None
        self._received = 0
        self._gzip = None  # tracks the gzip stream, to see its end marker arrive

    def read(self, size: int | None = None) -> bytes:
        data = self._response.read(size)
        if self._received == 0 and data.startswith(b"\x1f\x8b"):
            self._gzip = zlib.decompressobj(wbits=31)
        self._received += len(data)
        if self._gzip is not None and not self._gzip.eof:
            self._gzip.decompress(data)
        if not data and size != 0:
            self._check_whole()
        return data

    def _check_whole(self) -> None:
        if self._expected is not None and self._received < self._expected:
            raise EOFError(f"cut off after {self._received} of {self._expected} bytes")
        if self._gzip is not None and not self._gzip.eof:
            raise EOFError(f"the archive stops short after {self._received} bytes")

    def close(self) -> None:
        self._response.close()


@contextlib.contextmanager
def _network_timeout(seconds: float):
    """tensorflow_hub's urlopen has no timeout; a silent network would hang a run forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
