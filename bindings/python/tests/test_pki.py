from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import flotta


def test_device_key_is_ecdsa_p256_pkcs8() -> None:
    pem = flotta.pki.generate_device_key()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert flotta.pki.generate_device_key() != pem


def test_csr_is_signed_by_the_key_and_names_the_device() -> None:
    pem = flotta.pki.generate_device_key()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    csr = x509.load_pem_x509_csr(flotta.pki.make_csr(pem, "camera-17").encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "camera-17"
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_bad_inputs_raise_pki_errors() -> None:
    key = flotta.pki.generate_device_key()
    with pytest.raises(flotta.PkiError):
        flotta.pki.make_csr("not a key", "camera-17")
    with pytest.raises(flotta.PkiError) as caught:
        flotta.pki.make_csr(key, "Not A Device/Id")
    assert isinstance(caught.value, ValueError)
    rsa_like = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
    with pytest.raises(flotta.PkiError):
        flotta.pki.make_csr(rsa_like, "camera-17")
