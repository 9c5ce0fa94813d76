"""The HTTP listening socket, bound before a process opens any other connection.

An outgoing connection (to Kafka, say) is given a free local port by the
kernel; if the server's own port is free at that moment it may be the one, and
the server could not bind it once its start-up is done. So a process binds its
port first, and ``tokenrelay up`` binds its children's ports once and hands the
sockets down, so that a restarted child never races anyone for its port and
connections made while it restarts wait in the backlog instead of being refused.
"""

from __future__ import annotations

import socket

from services.core.errors import ConfigError


def listening_socket(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``listen`` is left to its server), or a
    ``ConfigError`` that names the address. ``shared``: one of several sockets on the same
    port (``SO_REUSEPORT``), among which the kernel spreads new connections — how several
    gateway processes serve one port, each its own socket held across its restarts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock
