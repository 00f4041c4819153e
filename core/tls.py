"""TLS contexts: a server context whose certificate is replaced in place when its files change,
and the client context the dispatcher verifies subscribers with.

Why in place: the listening sockets were handed one `ssl.SSLContext` when they started, and every
new handshake reads the certificate from that object. Loading the new pair into the same object
(`load_cert_chain`) is therefore all a rotation needs: connections already open keep the session
they negotiated, new ones present the new certificate, and nothing restarts. cert-manager and
Kubernetes Secret volumes rewrite both files at once, but not atomically as a pair, so a new pair is
first loaded into a scratch context: a certificate whose key has not arrived yet (or a half-written
file) is refused there, logged, and tried again at the next poll, while the live context keeps the
last good pair. (Loading a mismatched pair straight into the live context would leave it without a
usable key, and every handshake would fail until the key arrived.)

What it refuses: client certificates (no mTLS), protocols below TLS 1.2, and reading the files on
every handshake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from kbroker.core.settings import TlsSettings

log = logging.getLogger(__name__)


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _mtimes(paths: tuple[Path, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(p.stat().st_mtime_ns for p in paths)
    except OSError:
        return None  # one is missing mid-rewrite: keep what is loaded


class ReloadingServerContext:
    """One live server `SSLContext`, kept on the newest valid certificate pair."""

    def __init__(self, settings: TlsSettings) -> None:
        if settings.cert is None or settings.key is None:
            raise ValueError("TLS needs both a certificate and a key file")
        self.settings = settings
        self.cert: Path = settings.cert
        self.key: Path = settings.key
        self.context = _server_context()
        self.reloads = 0  # successful loads after the first
        self._seen = _mtimes((self.cert, self.key))
        self._refused: tuple[int, ...] | None = None  # mtimes of a pair already logged as bad
        # The first load raises: a process told to serve TLS must not start without it.
        self.context.load_cert_chain(self.cert, self.key)

    def ca_pem(self) -> str:
        """What producers should trust (a Broker's CACerts): --tls-ca, else the certificate."""
        return (self.settings.ca or self.cert).read_text()

    def poll_once(self) -> bool:
        """Load the pair if the files changed since the last look; True when it was replaced."""
        now = _mtimes((self.cert, self.key))
        if now is None or now == self._seen:
            return False
        try:
            _server_context().load_cert_chain(self.cert, self.key)  # validate the pair first
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for readers
            if now != self._refused:  # once per version of the files, not once per poll
                self._refused = now
                log.warning(
                    "TLS certificate %s not reloaded (kept the previous): %s", self.cert, exc
                )
            return False  # `_seen` unchanged: the next poll tries again
        self.context.load_cert_chain(self.cert, self.key)
        self._seen = now
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            self.poll_once()


def client_context(ca: Path | None, also: Path | None = None) -> ssl.SSLContext:
    """Verify servers against `ca` (a PEM bundle), else the system trust store; and `also`."""
    ctx = ssl.create_default_context() if ca is None else ssl.create_default_context(cafile=str(ca))
    if also is not None:
        ctx.load_verify_locations(cafile=str(also))
    return ctx
