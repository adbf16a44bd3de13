"""Free TCP ports on loopback, for servers this package starts next to a test, benchmark or script."""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_port_block"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_block(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port P with P, P + 1 and P + 2 free on ``host`` (``focal-serve``'s HTTP, gRPC and metrics)."""
    for _ in range(attempts):
        port = free_port(host)
        if port > 65000:
            continue
        try:
            for p in (port, port + 1, port + 2):
                with socket.socket() as probe:
                    probe.bind((host, p))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no three consecutive free ports on {host}")
