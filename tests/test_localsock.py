"""nbcanvas.localsock: the Unix sockets beside ``nbtcp://`` loopback listeners, over real
sockets with distributed's own ``listen``/``connect`` (handshake included)."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile

import dask
import pytest
from distributed.comm import connect, listen

from nbcanvas import localsock
from nbcanvas.errors import ImproperlyConfigured
from tests.test_comm import _echo_pair

TIMEOUT = 30
pytestmark = pytest.mark.skipif(os.name != "posix", reason="Unix sockets")


@pytest.fixture
def tmp(monkeypatch):
    """A temporary directory of this test's own, where the private directory is made: short,
    as a socket's path must be (pytest's ``tmp_path`` under xdist is too long for one)."""
    d = tempfile.mkdtemp(prefix="nbls", dir="/tmp" if os.path.isdir("/tmp") else None)
    monkeypatch.setattr(tempfile, "tempdir", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _family(comm) -> int:
    return comm._stream.transport.get_extra_info("socket").family


async def _pair(unix_at_listen: bool = True):
    """An echoing listener (its Unix socket as the setting says) and a comm connected to it."""
    with dask.config.set({"nbcanvas.nbtcp.unix": unix_at_listen}):
        return await _echo_pair()


async def _new_family(address: str) -> int:
    """The socket family a new connection to ``address`` goes through."""
    comm = await connect(address, timeout=TIMEOUT)
    try:
        return _family(comm)
    finally:
        await comm.close()


def _dead_socket(path: str) -> None:
    """The socket a listener leaves when its process is killed: the file, and nobody there."""
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def test_only_this_machines_loopback_addresses_have_a_path(tmp, monkeypatch):
    assert localsock.path_for("10.0.0.5", 8786) is None
    assert localsock.path_for("localhost", 8786) is None  # a name: TCP
    p = localsock.path_for("127.0.0.1", 8786, create=True)
    ns = localsock._netns()  # a loopback is a network namespace's own
    assert p == os.path.join(tmp, f"nbcanvas-{os.getuid()}", f"127.0.0.1-8786{ns}.sock")
    assert localsock.path_for("::1", 8786).endswith(f"::1-8786{ns}.sock")
    if os.path.exists("/proc/self/ns/net"):
        assert ns == "-" + str(os.stat("/proc/self/ns/net").st_ino)
    monkeypatch.setattr(tempfile, "tempdir", os.path.join(tmp, "x" * 80))  # a long TMPDIR: TCP
    os.mkdir(tempfile.tempdir)
    assert localsock.path_for("127.0.0.1", 8786, create=True) is None
    monkeypatch.setattr(tempfile, "tempdir", tmp)
    with dask.config.set({"nbcanvas.nbtcp.unix": False}):
        assert localsock.path_for("127.0.0.1", 8786) is None
    with dask.config.set({"nbcanvas.nbtcp.unix": "off"}):  # as DASK_NBCANVAS__NBTCP__UNIX=off
        assert localsock.path_for("127.0.0.1", 8786) is None
    with dask.config.set({"nbcanvas.nbtcp.unix": 1}), pytest.raises(ImproperlyConfigured):
        localsock.path_for("127.0.0.1", 8786)


def test_the_directory_is_used_only_while_it_is_private(tmp):
    d = localsock.directory(create=True)
    assert d is not None and os.stat(d).st_mode & 0o777 == 0o700
    os.chmod(d, 0o755)  # others may enter: not used
    assert localsock.directory() is None and localsock.path_for("127.0.0.1", 1) is None
    os.chmod(d, 0o700)
    assert localsock.directory() == d
    os.rmdir(d)
    os.symlink(tmp, d)  # a link to somewhere else: not used
    assert localsock.directory() is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_directory_of_another_user_is_not_used(tmp):
    d = localsock.directory(create=True)
    os.chown(d, 65534, -1)  # made (say) by another user before this one's first listener
    assert localsock.directory() is None and localsock.path_for("127.0.0.1", 1) is None


def test_a_loopback_listener_is_reached_through_its_unix_socket(tmp):
    async def go():
        listener, comm = await _pair()
        path = localsock.path_for("127.0.0.1", listener.get_host_port()[1])
        try:
            assert _family(comm) == socket.AF_UNIX and os.path.exists(path)
            assert comm.peer_address == listener.contact_address  # addresses stay nbtcp://
            assert comm.remote_info["address"] == comm.peer_address  # handshake done
            for i in range(3):
                await comm.write({"i": i, "blob": b"x" * (i * 100_000)})
            got = [await comm.read() for _ in range(3)]
            assert [len(m["blob"]) for m in got] == [0, 100_000, 200_000]
        finally:
            await comm.close()
            listener.stop()
        assert not os.path.exists(path)  # removed with its listener
    _run(go())


def test_without_a_unix_socket_the_connector_uses_tcp(tmp):
    async def go():
        listener, comm = await _pair(unix_at_listen=False)  # a listener with the setting off
        port = listener.get_host_port()[1]
        path = localsock.path_for("127.0.0.1", port, create=True)
        _dead_socket(path)  # left by a listener that died on this port
        try:
            assert _family(comm) == socket.AF_INET
            comm2 = await connect(listener.contact_address, timeout=TIMEOUT)
            assert _family(comm2) == socket.AF_INET  # the stale socket refuses: TCP
            await comm2.write({"op": "ping"})
            assert await comm2.read() == {"op": "ping"}
            await comm2.close()
        finally:
            await comm.close()
            listener.stop()
    _run(go())


def test_a_listener_takes_over_a_stale_socket_of_its_port(tmp):
    async def go():
        listener, comm = await _pair()
        port = listener.get_host_port()[1]
        await comm.close()
        listener.stop()
        path = localsock.path_for("127.0.0.1", port, create=True)
        _dead_socket(path)
        with dask.config.set({"nbcanvas.nbtcp.unix": True}):
            again = listen(f"nbtcp://127.0.0.1:{port}", lambda c: c.close())
            await again.start()
        try:
            assert localsock.path_for("127.0.0.1", port) == again.unix[1]
            probe = socket.socket(socket.AF_UNIX)
            probe.connect(path)  # the new listener answers there
            probe.close()
        finally:
            again.stop()
    _run(go())


def test_a_directory_open_to_others_makes_the_connector_use_tcp(tmp):
    async def go():
        listener, comm = await _pair()
        try:
            assert _family(comm) == socket.AF_UNIX
            os.chmod(localsock.directory(), 0o777)  # anyone could have put a socket there now
            assert await _new_family(listener.contact_address) == socket.AF_INET
        finally:
            await comm.close()
            listener.stop()
    _run(go())


def test_a_new_listener_removes_the_sockets_of_listeners_that_died(tmp, capfd):
    async def go():
        d = localsock.directory(create=True)
        dead = os.path.join(d, "127.0.0.1-1-0.sock")
        _dead_socket(dead)
        live, comm = await _pair()  # a listener alive: its socket stays, reached as before
        await comm.close()
        other, comm2 = await _pair()
        try:
            assert not os.path.exists(dead)
            assert os.path.exists(live.unix[1]) and os.path.exists(other.unix[1])
            assert await _new_family(live.contact_address) == socket.AF_UNIX
        finally:
            await comm2.close()
            live.stop()
            other.stop()
        assert sorted(os.listdir(d)) == []
    _run(go())
    err = capfd.readouterr().err  # the probe of a live listener is a connection it shrugs off
    assert " - WARNING - " not in err and " - ERROR - " not in err, err
