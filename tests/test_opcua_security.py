"""Basic256Sha256 SignAndEncrypt against a real asyncua server: a server certificate not on the trust list is refused.

Certificates are made here with `cryptography` (self-signed RSA 2048, as a controller's and the
appliance's own usually are). The same server is accepted once its certificate is trusted, so
the refusal is the trust list's doing, not a broken handshake.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import OpcuaServer, load_settings
from appliance.intake.intake import Intake
from appliance.intake.opcua import OpcuaInput
from appliance.serial.alarm_store import AlarmStore
from tests.intake_support import Controller, free_port, store, wait_for

__all__ = ["store"]  # fixture

logging.getLogger("asyncua").setLevel(logging.CRITICAL)


def make_certificate(folder: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A self-signed application instance certificate (DER) and its private key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def reader_for(store: AlarmStore, endpoint: str, certs: Path, trusted: list[Path], **more: Any) -> OpcuaInput:
    config = OpcuaServer(
        endpoint=endpoint, machine="MC-01", code_field="ConditionName", security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt", certificate=certs / "shifu.der", private_key=certs / "shifu.pem",
        trusted_certificates=trusted, reconnect_min_s=0.2, reconnect_max_s=0.5, timeout_s=2.0, **more,
    )
    reader = OpcuaInput(config, Intake(load_settings(), store))
    reader.start()
    return reader


def test_an_untrusted_server_certificate_is_refused(tmp_path: Path, store: AlarmStore) -> None:
    make_certificate(tmp_path, "shifu", "urn:example.org:FreeOpcUa:opcua-asyncio")  # the appliance's own
    server_cert, server_key = make_certificate(tmp_path, "controller", "urn:freeopcua:python:server")
    expected, _ = make_certificate(tmp_path, "expected-controller", "urn:freeopcua:python:server")
    controller = Controller(free_port(), certificate=server_cert, private_key=server_key)
    controller.start()
    try:
        # Trusting another controller's certificate: this server is refused at every attempt.
        reader = reader_for(store, controller.endpoint, tmp_path, [expected])
        try:
            wait_for(lambda: "BadCertificateUntrusted" in reader.status.last_error, what="the refusal")
            wait_for(lambda: reader.status.counters.get("messages", 0) == 0 and not reader.connected.is_set()
                     and "BadCertificateUntrusted" in reader.status.last_error, what="still refused")
            controller.alarm("P77")  # raised while refused: never read
        finally:
            reader.stop()
        assert not reader.refreshed.is_set() and store.count() == 0

        # The same server with its certificate trusted: connected, and its alarm (refreshed) arrives.
        reader = reader_for(store, controller.endpoint, tmp_path, [server_cert])
        try:
            assert reader.refreshed.wait(30), reader.status.last_error
            controller.alarm("P78")
            wait_for(lambda: store.count() >= 1, what="an alarm over the encrypted channel")
        finally:
            reader.stop()
    finally:
        controller.close()
    assert "P78" in {r["code"] for r in store.opstore.rows("SELECT code FROM alarms")}


def test_security_without_a_trust_list_is_refused_at_start(tmp_path: Path) -> None:
    import pytest

    from kb.errors import ConfigError

    with pytest.raises(ConfigError, match="trusted_certificates"):
        load_settings(opcua={"servers": [{"endpoint": "opc.tcp://10.0.0.5:4840", "security_policy": "Basic256Sha256",
                                          "security_mode": "SignAndEncrypt", "certificate": str(tmp_path / "c.der"),
                                          "private_key": str(tmp_path / "k.pem")}]})


def test_certificate_login(tmp_path: Path, store: AlarmStore) -> None:
    """A server that admits only the appliance's certificate as a user: anonymous is refused, certificate login reads."""
    shifu_cert, _ = make_certificate(tmp_path, "shifu", "urn:example.org:FreeOpcUa:opcua-asyncio")
    server_cert, server_key = make_certificate(tmp_path, "controller", "urn:freeopcua:python:server")
    controller = Controller(free_port(), certificate=server_cert, private_key=server_key, user_certificate=shifu_cert)
    controller.start()
    try:
        anonymous = reader_for(store, controller.endpoint, tmp_path, [server_cert])
        try:
            wait_for(lambda: anonymous.status.last_error != "", what="the anonymous login refused")
        finally:
            anonymous.stop()
        assert not anonymous.refreshed.is_set()
        reader = reader_for(store, controller.endpoint, tmp_path, [server_cert], certificate_login=True)
        try:
            assert reader.refreshed.wait(30), reader.status.last_error
            controller.alarm("P90")
            wait_for(lambda: store.count() == 1, what="an alarm read as the certificate's user")
        finally:
            reader.stop()
    finally:
        controller.close()
