"""The signing options: files checked at start, one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from documents.signing_testca import make_ca
from server.core.settings import ConfigError, parse_settings


def test_a_trust_anchor_file_and_a_token_are_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca().pem)
    module = tmp_path / "libtoken.so"
    module.write_bytes(b"\x7fELF")
    settings = parse_settings(["--signing-ca", str(ca)], env={
        "HOPSO_SIGNING_PKCS11_MODULE": str(module), "HOPSO_SIGNING_PKCS11_TOKEN": "hopso"})
    assert settings.signing_ca == ca and settings.signing_pkcs11_module == module
    assert settings.signing_pkcs11_token == "hopso"
    assert parse_settings([], env={}).signing_ca is None


@pytest.mark.parametrize("args, fragment", [
    (["--signing-ca", "/nonexistent/ca.pem"], "--signing-ca file not found"),
    (["--signing-ca", "{junk}"], "--signing-ca is not a PEM file of certificates"),
    (["--signing-pkcs11-module", "{junk}"], "go together"),
    (["--signing-pkcs11-token", "hopso"], "go together"),
])
def test_signing_mistakes_stop_the_start_with_one_line(tmp_path: Path, args: list[str],
                                                       fragment: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=fragment):
        parse_settings([a.replace("{junk}", str(junk)) for a in args], env={})
