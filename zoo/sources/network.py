"""Is the model hub reachable? Asked once per command, answered within about a second.

`zoo run --all` offline means the backbones that are ready, not a hundred downloads that each
time out. ZOO_HUB_PROBE=HOST:PORT points the check elsewhere (tests use a loopback port).
"""

from __future__ import annotations

import os
import socket

HUB_ADDRESS = ("tfhub.dev", 443)
PROBE_VARIABLE = "ZOO_HUB_PROBE"
PROBE_TIMEOUT_S = 1.0


def hub_address() -> tuple[str, int]:
    configured = os.environ.get(PROBE_VARIABLE, "")
    host, _, port = configured.rpartition(":")
    if host and port.isdigit():
        return host, int(port)
    return HUB_ADDRESS


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens within `timeout_s` (name lookup included)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # bounds the name lookup's socket too
    try:
        with socket.create_connection(hub_address(), timeout=timeout_s):
            return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)
