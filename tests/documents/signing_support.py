"""Shared by the signing tests: a small PDF, a test CA as pyHanko's trust anchors."""

from __future__ import annotations

import pymupdf
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from documents.signing_testca import SigningCA


def small_pdf(text: str = "BIÊN BẢN cuộc họp") -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    try:
        return doc.tobytes(garbage=3, deflate=True)
    finally:
        doc.close()


def anchors(*cas: SigningCA) -> list[asn1_x509.Certificate]:
    return [asn1_x509.Certificate.load(ca.cert.public_bytes(serialization.Encoding.DER))
            for ca in cas]
