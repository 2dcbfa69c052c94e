"""Make the copy of a PDF that is distributed to delegates' tablets.

Removes what a hostile or careless PDF can *do* when opened in a full
reader: JavaScript (document, page, field, annotation level), automatic
actions (OpenAction, /AA), launch/remote-go-to/submit/import actions, links
to non-web URI schemes, embedded files and attachment/multimedia annotations,
XFA forms. Keeps internal GoTo links, http(s)/mailto links, the outline and
ordinary annotations. Then garbage-collects, saves, reopens and re-scans.
Runs in a worker (it parses the whole file).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

SAFE_ACTIONS = {"/GoTo", "/Named", "/Thread"}  # plus /URI with a SAFE_SCHEMES target
SAFE_SCHEMES = ("http://", "https://", "mailto:")
_UNSAFE_ANNOTS = {  # file attachment, sound, movie, rich media, screen, 3D
    getattr(pymupdf, f"PDF_ANNOT_{name}")
    for name in ("FILE_ATTACHMENT", "SOUND", "MOVIE", "RICH_MEDIA", "SCREEN", "3D")
}
# Name tokens that must not survive. PyMuPDF "deletes" a key by setting it to
# null, which the PDF spec defines as absent, so "/AA null" is fine. \b stops
# '/JSomeFont' from matching.
_LEFTOVER = re.compile(
    rb"/(JavaScript|JS|Launch|EmbeddedFiles?|AA|XFA|SubmitForm|ImportData|GoToR|GoToE|RichMedia)"
    rb"\b(?!\s*null)"
)

_DROP_KEYS = (  # (key, report label): removed wherever they occur
    ("AA", "additional_actions"),
    ("EF", "embedded_files"),
    ("XFA", "xfa_forms"),
    ("JS", "javascript"),
)


@dataclass(frozen=True)
class SanitizeReport:
    output_path: str
    page_count: int
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.removed.values())


class SanitizeError(RuntimeError):
    pass


def temp_paths(dst: str, tag: str) -> tuple[str, ...]:
    """The temporary files sanitize_pdf(src, dst, tag) may leave if it is killed."""
    return (f"{dst}.tmp-{tag}",)


def sanitize_pdf(src: str, dst: str, tag: str | None = None) -> SanitizeReport:
    """Write a sanitised copy of ``src`` to ``dst`` (atomically) and verify it.

    ``tag`` names the temporary files (temp_paths), which the caller removes if the
    worker is killed before it finishes."""
    removed: Counter[str] = Counter()
    with pymupdf.open(src, filetype="pdf") as doc:
        if doc.needs_pass:
            raise SanitizeError("encrypted document")
        pages = doc.page_count
        _clean_catalog(doc, removed)
        _remove_unsafe_annots(doc, removed)
        _clean_objects(doc, removed)
        (tmp,) = temp_paths(dst, tag or f"{os.getpid()}")
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        doc.save(tmp, garbage=3, deflate=True)
    try:
        _verify(tmp, pages)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return SanitizeReport(dst, pages, {k: v for k, v in removed.items() if v})


def _clean_catalog(doc: pymupdf.Document, removed: Counter[str]) -> None:
    cat = doc.pdf_catalog()
    kind, _ = doc.xref_get_key(cat, "OpenAction")
    # An action dict/ref may be unsafe; a plain destination array is harmless.
    if kind in ("xref", "dict") and _action_is_unsafe(doc, cat, "OpenAction"):
        doc.xref_set_key(cat, "OpenAction", "null")
        removed["open_action"] += 1
    names_kind, names_val = doc.xref_get_key(cat, "Names")
    names_xref, prefix = (cat, "Names/") if names_kind == "dict" else (None, "")
    if names_kind == "xref":
        names_xref = int(names_val.split()[0])
    if names_xref is not None:
        if doc.embfile_count():
            removed["embedded_files"] += doc.embfile_count()
        for key, label in (("JavaScript", "javascript"), ("EmbeddedFiles", "embedded_files")):
            if doc.xref_get_key(names_xref, prefix + key)[0] != "null":
                doc.xref_set_key(names_xref, prefix + key, "null")
                removed[label] += 0 if label == "embedded_files" else 1
    if doc.xref_get_key(cat, "PageMode")[1] == "/UseAttachments":
        doc.xref_set_key(cat, "PageMode", "/UseNone")
    for key in ("Collection", "AA"):  # portfolios; document-level automatic actions
        if doc.xref_get_key(cat, key)[0] != "null":
            doc.xref_set_key(cat, key, "null")
            removed["additional_actions" if key == "AA" else "portfolio"] += 1


def _remove_unsafe_annots(doc: pymupdf.Document, removed: Counter[str]) -> None:
    for page_no in range(doc.page_count):
        page = doc[page_no]
        bad = [xref for xref, kind, _ in page.annot_xrefs() if kind in _UNSAFE_ANNOTS]
        for xref in bad:
            annot = page.load_annot(xref)
            if annot is not None:
                page.delete_annot(annot)
                removed["attachment_annotations"] += 1


def _clean_objects(doc: pymupdf.Document, removed: Counter[str]) -> None:
    """Walk every object: drop unsafe actions, action chains, file streams, XFA."""
    for xref in range(1, doc.xref_length()):
        try:
            keys = [k for k in doc.xref_get_keys(xref) if doc.xref_get_key(xref, k)[0] != "null"]
        except Exception:
            continue  # free or broken entry; garbage collection drops it
        if "A" in keys and _action_is_unsafe(doc, xref, "A"):
            doc.xref_set_key(xref, "A", "null")
            removed["unsafe_actions"] += 1
        if "S" in keys and "Next" in keys:  # an action object with a chain
            doc.xref_set_key(xref, "Next", "null")
            removed["chained_actions"] += 1
        for key, label in _DROP_KEYS:
            if key in keys:
                doc.xref_set_key(xref, key, "null")
                removed[label] += 1


def _action_is_unsafe(doc: pymupdf.Document, xref: int, key: str) -> bool:
    kind, value = doc.xref_get_key(xref, key)
    if kind == "xref":
        xref, key = int(value.split()[0]), ""
    elif kind != "dict":
        return kind != "array"  # arrays are destinations; anything else is junk
    prefix = f"{key}/" if key else ""
    if doc.xref_get_key(xref, prefix + "Next")[0] != "null":
        return True  # chains can hide anything; legitimate files rarely use them
    _, subtype = doc.xref_get_key(xref, prefix + "S")
    if subtype == "/URI":
        _, uri = doc.xref_get_key(xref, prefix + "URI")
        return not uri.strip().lower().startswith(SAFE_SCHEMES)
    return subtype not in SAFE_ACTIONS


def _verify(path: str, expected_pages: int) -> None:
    with pymupdf.open(path, filetype="pdf") as doc:
        if doc.page_count != expected_pages:
            raise SanitizeError(f"sanitised copy has {doc.page_count} pages, not {expected_pages}")
        for xref in range(1, doc.xref_length()):
            try:
                obj = doc.xref_object(xref, compressed=True).encode("latin-1", "replace")
            except Exception:
                continue
            found = _LEFTOVER.search(obj)
            if found:
                raise SanitizeError(f"object {xref} still contains {found.group().decode()}")
