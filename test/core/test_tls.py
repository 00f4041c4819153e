"""ReloadingServerContext on a real TLS listener: a rotated pair reaches new handshakes through
the same context object; a half-rotated pair (new certificate, old key) is refused and the old
pair keeps serving; the client context verifies with a custom CA or refuses."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from fixtures.certs import ServerCerts, make_ca
from kbroker.core import tls
from kbroker.core.settings import TlsSettings


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hi")
    await writer.drain()
    writer.close()


async def peer_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate a new connection to `port` is shown."""
    client = tls.client_context(ca)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    await reader.read()
    writer.close()
    return int(x509.load_der_x509_certificate(der).serial_number)


def settings(certs: ServerCerts) -> TlsSettings:
    return TlsSettings(cert=certs.cert, key=certs.key, ca=certs.ca.path)


def later() -> float:
    return time.time() + 5  # a distinct mtime even on coarse file systems


async def test_rotated_pair_reaches_new_handshakes(server_certs: ServerCerts) -> None:
    live = tls.ReloadingServerContext(settings(server_certs))
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=live.context)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await peer_serial(port, server_certs.ca.path) == 1
        assert not live.poll_once()  # unchanged files: nothing loaded
        server_certs.ca.issue(server_certs.cert, server_certs.key, serial=2, mtime=later())
        assert live.poll_once()
        assert await peer_serial(port, server_certs.ca.path) == 2
        assert live.reloads == 1
    finally:
        server.close()


async def test_half_rotated_pair_keeps_the_old_one(server_certs: ServerCerts) -> None:
    live = tls.ReloadingServerContext(settings(server_certs))
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=live.context)
    port = server.sockets[0].getsockname()[1]
    old_key = server_certs.key.read_bytes()
    try:
        server_certs.ca.issue(server_certs.cert, server_certs.key, serial=3, mtime=later())
        server_certs.key.write_bytes(old_key)  # the new key has not arrived yet
        assert not live.poll_once()
        assert await peer_serial(port, server_certs.ca.path) == 1  # still serving, old pair
        server_certs.ca.issue(server_certs.cert, server_certs.key, serial=3, mtime=later() + 1)
        assert live.poll_once()  # tried again once the pair matches
        assert await peer_serial(port, server_certs.ca.path) == 3
    finally:
        server.close()


def test_unusable_files_fail_at_start(tmp_path: Path, server_certs: ServerCerts) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        tls.ReloadingServerContext(TlsSettings(cert=bad, key=server_certs.key))
    with pytest.raises(ValueError):
        tls.ReloadingServerContext(TlsSettings(cert=server_certs.cert))


def test_ca_pem_defaults_to_the_certificate(server_certs: ServerCerts) -> None:
    own = tls.ReloadingServerContext(TlsSettings(cert=server_certs.cert, key=server_certs.key))
    assert own.ca_pem() == server_certs.cert.read_text()
    assert tls.ReloadingServerContext(settings(server_certs)).ca_pem().startswith("-----BEGIN")


async def test_client_context_trusts_only_the_given_ca(
    tmp_path: Path, server_certs: ServerCerts
) -> None:
    live = tls.ReloadingServerContext(settings(server_certs))
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=live.context)
    port = server.sockets[0].getsockname()[1]
    other = make_ca(tmp_path, "other")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await peer_serial(port, other.path)
        with pytest.raises(ssl.SSLCertVerificationError):  # system trust: not our test CA
            await asyncio.open_connection("127.0.0.1", port, ssl=tls.client_context(None))
    finally:
        server.close()
