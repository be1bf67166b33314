"""The device side of enrolment: a device key that never leaves the device, and
the certificate signing request the agent sends with ``registration``.

Keys are ECDSA P-256 in PKCS#8 PEM; requests are PKCS#10 PEM. The server ignores
every requested field except the public key: it issues the device certificate
with CN = device id and OU = namespace.
"""

from __future__ import annotations

from . import _flotta


def generate_device_key() -> str:
    """A new ECDSA P-256 private key, as PKCS#8 PEM."""
    return _flotta.generate_device_key()


def make_csr(key: str, device_id: str) -> str:
    """A PEM certificate signing request for ``device_id`` signed with ``key``
    (PEM). Raises :class:`flotta.PkiError` for a key that is not ECDSA P-256 PEM
    or a device id that is not a DNS subdomain."""
    return _flotta.make_csr(key, device_id)


__all__ = ["generate_device_key", "make_csr"]
