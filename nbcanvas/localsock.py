"""Unix sockets beside ``nbtcp://`` listeners on this machine's loopback (run stage).

A write to a TCP socket on the loopback interface runs TCP's whole send and receive path in the
writer; a Unix socket hands the bytes over. Measured on the 2-core VM the benchmarks run on, a
660-byte message (a task handed to a waiting worker process): 66-71 µs per write over TCP
against 56 µs over a Unix socket, and the single-task round trip with worker processes 0.045 ms
less (A/B in separate processes, six pairs of 800 round trips, less in every pair).

An ``nbtcp://`` listener bound to a loopback address (or to every address) also listens on a Unix
socket named after that address and port (and the network namespace, on Linux), in a directory
only this user may enter; a connector to a loopback address tries that socket first and falls
back to TCP when there is none (a listener in another process with the setting off, or one
that died; the next listener to start removes the sockets nothing answers on). Addresses stay
``nbtcp://host:port``: a worker has the same name either way. A directory that is not this
user's, or that others may enter, is not used, so another user of the machine cannot stand in
for a listener (TCP is used then). dask's config ``nbcanvas.nbtcp.unix: false`` turns it off.

>>> path_for("10.0.0.5", 8786) is None  # not this machine's loopback: always TCP
True
>>> p = path_for("127.0.0.1", 8786)
>>> p is None or os.path.basename(p).startswith("127.0.0.1-8786")
True
"""
from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import stat
import tempfile
from typing import Any

import dask

from .errors import ImproperlyConfigured

__all__ = ["enabled", "directory", "path_for", "listen", "close"]

#: sun_path holds 108 bytes on Linux, 104 on macOS: longer paths mean TCP
_MAX_PATH = 100
#: the config's value as an environment variable gives it (DASK_NBCANVAS__NBTCP__UNIX=false)
_WORDS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def enabled() -> bool:
    """Whether nbtcp listeners and connectors use Unix sockets on this machine's loopback.

    >>> with dask.config.set({"nbcanvas.nbtcp.unix": "maybe"}):
    ...     enabled()
    Traceback (most recent call last):
    nbcanvas.errors.ImproperlyConfigured: nbcanvas.nbtcp.unix is 'maybe'; choose true or false
    """
    value = dask.config.get("nbcanvas.nbtcp.unix", True)
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        value = _WORDS[value.strip().lower()]
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"nbcanvas.nbtcp.unix is {value!r}; choose true or false")
    return value and os.name == "posix" and hasattr(socket, "AF_UNIX")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address: TCP
        return False


def directory(create: bool = False) -> str | None:
    """This user's private directory for the sockets, or None if it is missing or not private
    (not a directory of this user's, or open to others)."""
    d = os.path.join(tempfile.gettempdir(), f"nbcanvas-{os.getuid()}")
    if create:
        with contextlib.suppress(OSError):  # there already, or not ours to make: checked below
            os.mkdir(d, 0o700)
    try:
        st = os.lstat(d)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return d


def path_for(host: str, port: int, create: bool = False) -> str | None:
    """The Unix socket of the ``nbtcp://`` listener at ``host:port``, for a loopback ``host``
    (None otherwise, or when it is turned off or has no private directory)."""
    if not enabled() or not _loopback(host):
        return None
    d = directory(create)
    if d is None:
        return None
    p = os.path.join(d, f"{host}-{port}{_netns()}.sock")
    return p if len(os.fsencode(p)) <= _MAX_PATH else None


@functools.cache
def _netns() -> str:
    """This process's network namespace on Linux (``-4026531840``), else nothing: two
    containers that share a /tmp each have their own loopback, and their own sockets here."""
    try:
        link = os.readlink("/proc/self/ns/net")  # "net:[4026531840]"
    except OSError:
        return ""
    digits = "".join(c for c in link if c.isdigit())
    return f"-{digits}" if digits else ""


def _answering(bound_host: str) -> str | None:
    """The loopback address a listener bound to ``bound_host`` answers on, if any."""
    if bound_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound_host == "::":
        return "::1"
    return bound_host if _loopback(bound_host) else None


async def listen(loop: Any, factory: Any, bound: tuple[str, int],
                 backlog: int) -> tuple[Any, str] | None:
    """Listen on the Unix socket of the listener bound to ``bound`` (host, port); returns the
    server and its path, or None (not on loopback, turned off, or it could not be made)."""
    host = _answering(str(bound[0]))
    path = path_for(host, int(bound[1]), create=True) if host is not None else None
    if path is None:
        return None
    _sweep(os.path.dirname(path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a listener that died; this port is ours now
    try:
        server = await loop.create_unix_server(factory, path=path, backlog=backlog)
    except OSError:
        return None
    return server, path


def _sweep(d: str) -> None:
    """Remove the sockets of listeners that died without closing (a process killed, a kernel
    that exited hard): nothing answers there any more. A listener caught between making its
    socket and listening on it loses it, and is reached over TCP instead."""
    try:
        names = [n for n in os.listdir(d) if n.endswith(".sock")]
    except OSError:
        return
    for name in names:
        path = os.path.join(d, name)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.setblocking(False)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                os.unlink(path)
        except OSError:  # busy (a full backlog), or not ours to judge: left alone
            pass
        finally:
            probe.close()


def close(handle: tuple[Any, str] | None) -> None:
    """Stop a Unix listener made by :func:`listen` and remove its socket."""
    if handle is None:
        return
    server, path = handle
    server.close()
    with contextlib.suppress(OSError):
        os.unlink(path)
