"""TLS (issue 12: 5): nbcanvas runs on a cluster that requires encryption, through dask's
``Security``; a plain connection, a client without certificates and a client whose certificate
another CA signed are all refused.

The certificates are made at test time with ``cryptography``: a CA, and one certificate/key
pair (for 127.0.0.1) that the scheduler, the workers and the client use.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection

from .rtasks import tasks_for

pytestmark = pytest.mark.cluster

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402
from tests.waiting import dask_cli, scheduler_address, stop_processes


def _name(cn: str):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject, issuer, key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2)))


def make_ca(directory: Path, cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(cn), _name(cn), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{cn.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, str(path)


def make_leaf(directory: Path, ca_key, ca_cert, stem: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(stem), ca_cert.subject, key)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A scheduler and 2 workers that speak only TLS, started with the ``dask`` CLI in their
    own processes and stopped by PID (an in-process cluster's close could hang after a
    refused handshake); yields (address, paths)."""
    import subprocess

    from distributed import Client
    from distributed.security import Security
    d = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert, ca_file = make_ca(d, "nbcanvas test CA")
    cert, key = make_leaf(d, ca_key, ca_cert, "node")
    other_key, other_cert, other_ca = make_ca(d, "some other CA")
    intruder_cert, intruder_key = make_leaf(d, other_key, other_cert, "intruder")
    cli = dask_cli()
    tls = ["--tls-ca-file", ca_file, "--tls-cert", cert, "--tls-key", key]
    sched_file = d / "scheduler.json"
    procs = [subprocess.Popen([cli, "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0", "--scheduler-file",
                               str(sched_file), *tls], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        address = scheduler_address(sched_file, procs[0])
        for _ in range(2):
            procs.append(subprocess.Popen([cli, "worker", address, "--nthreads", "1",
                                           "--no-dashboard", *tls], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        sec = Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key,
                       require_encryption=True)
        with Client(address, security=sec, set_as_default=False, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
        yield address, {
            "ca": ca_file, "cert": cert, "key": key, "other_ca": other_ca,
            "intruder_cert": intruder_cert, "intruder_key": intruder_key}
    finally:
        stop_processes(procs)


def test_nbcanvas_runs_a_chain_over_tls(tls_cluster):
    from distributed import Client
    from distributed.security import Security
    address, paths = tls_cluster
    assert address.startswith("tls://")
    sec = Security(tls_ca_file=paths["ca"], tls_client_cert=paths["cert"],
                   tls_client_key=paths["key"], require_encryption=True)
    client = Client(address, security=sec, set_as_default=False, timeout=30)
    try:
        app = nc.App("tls", client=client, set_as_current=False)
        t = tasks_for(app, "tls")
        r = (t.add.s(1, 2) | t.add.s(3) | nc.group(t.add.s(10), t.add.s(20)) | t.tsum.s()).delay()
        assert r.get(timeout=60) == 42  # (1+2+3) + 10, (1+2+3) + 20
        assert connection(app).client is client
        # every comm of this client is encrypted
        assert client.scheduler_comm.comm.peer_address.startswith("tls://")
    finally:
        client.close(timeout=20)


def test_plain_tcp_connection_is_refused(tls_cluster, quiet_distributed):
    address, _ = tls_cluster
    plain = address.replace("tls://", "tcp://")
    with pytest.raises(nc.ImproperlyConfigured, match=r"could not reach a dask scheduler at "
                                                      r"'tcp://127\.0\.0\.1:\d+'"):
        connection(nc.App("plain", address=plain, set_as_current=False))


def test_client_without_certificates_is_refused(tls_cluster, quiet_distributed):
    address, _ = tls_cluster
    with pytest.raises(nc.ImproperlyConfigured, match=r"speaks TLS and this process has no "
                                                      r"certificates for it.*Security"):
        connection(nc.App("no-certs", address=address, set_as_current=False))


def _tls_config(ca: str, cert: str, key: str) -> dict:
    """dask config that makes every Client(address) of this process speak TLS with these."""
    return {"distributed.comm.tls.ca-file": ca, "distributed.comm.tls.client.cert": cert,
            "distributed.comm.tls.client.key": key, "distributed.comm.require-encryption": True}


def test_address_and_dask_tls_config_connect(tls_cluster):
    import dask
    address, paths = tls_cluster
    with dask.config.set(_tls_config(paths["ca"], paths["cert"], paths["key"])):
        app = nc.App("tls-config", address=address, set_as_current=False)
        t = tasks_for(app, "tlsconf")
        try:
            assert (t.add.s(1, 2) | t.add.s(3)).delay().get(timeout=60) == 6
            assert connection(app).client.scheduler_comm.comm.peer_address.startswith("tls://")
        finally:
            connection(app).client.close(timeout=20)


def test_certificate_from_another_ca_is_refused_with_a_clear_error(tls_cluster,
                                                                   quiet_distributed):
    """The cluster does not trust the CA that signed this certificate. With TLS 1.3 the server
    checks the client's certificate after the client's side of the handshake is done, and a
    bare ``distributed.Client`` can then wait forever for dask's handshake (it is deliberately
    unbounded); nbcanvas probes the handshake within its connect timeout first."""
    import dask
    address, paths = tls_cluster
    with dask.config.set(_tls_config(paths["ca"], paths["intruder_cert"],
                                     paths["intruder_key"])):
        for _ in range(10):  # the hang is a race
            with pytest.raises(nc.ImproperlyConfigured,
                               match=r"could not reach a dask scheduler at 'tls://.*does it "
                                     r"trust this process's TLS certificate"):
                connection(nc.App("intruder", address=address, set_as_current=False))


def test_cluster_certificate_from_an_untrusted_ca_is_refused(tls_cluster, quiet_distributed):
    """This process trusts another CA, so the cluster's own certificate is rejected here."""
    import dask
    address, paths = tls_cluster
    with dask.config.set(_tls_config(paths["other_ca"], paths["intruder_cert"],
                                     paths["intruder_key"])):
        with pytest.raises(nc.ImproperlyConfigured, match=r"(?i)certificate") as info:
            connection(nc.App("distrustful", address=address, set_as_current=False))
    assert "certificate" in str(info.value.__cause__).lower()
