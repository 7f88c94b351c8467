"""What a backbone's handle names: a plugin-built model, a download, or a local folder.

Handles are read in one place: the registry checks them, zoo.sources.hub resolves them and
plugins read the NAME of their `zoo:NAME` handles through `parse_handle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

BUILT, REMOTE, LOCAL = "built", "remote", "local"
BUILT_PREFIX = "zoo:"
REMOTE_PREFIXES = ("https://", "http://")
LOCAL_PREFIXES = ("file://", "/", "~")


@dataclass(frozen=True)
class Handle:
    text: str
    kind: str | None  # BUILT (zoo:NAME), REMOTE (http(s) URL), LOCAL (path, file:// URL), None

    @property
    def name(self) -> str:
        """A built handle's NAME (`zoo:NAME`), which its plugin builds the model from."""
        return self.text.removeprefix(BUILT_PREFIX) if self.kind == BUILT else ""

    @property
    def path(self) -> Path | None:
        """The folder a local handle names; None for other handles."""
        if self.kind != LOCAL:
            return None
        if self.text.startswith("file://"):
            return Path(unquote(urlparse(self.text).path))
        return Path(self.text).expanduser()


def parse_handle(text: str) -> Handle:
    if text.startswith(BUILT_PREFIX):
        return Handle(text, BUILT)
    if text.startswith(REMOTE_PREFIXES):
        return Handle(text, REMOTE)
    if text.startswith(LOCAL_PREFIXES):
        return Handle(text, LOCAL)
    return Handle(text, None)
