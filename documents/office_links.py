"""Remove what an Office package links to outside itself, before LibreOffice opens it.

A linked image, a linked OLE object, a linked section or an external workbook is fetched by
LibreOffice while it converts (http:, file:, a path next to the document): a server-side
request forgery, or a local file copied into the PDF. LibreOffice runs without network
(documents.office), but the package is also rewritten so the links are gone:

* OpenDocument (.odt/.ods/.odp): in every XML part, an ``href`` attribute (``xlink:href``
  in practice; any namespace here) that does not name a part of this package is removed,
  except a clickable http(s)/mailto hyperlink (``text:a``, ``draw:a``), which is never
  fetched. ``xml:base`` is removed (it would make a package path external).
* Office Open XML (.docx/.xlsx/.pptx): in every relationship part (``*.rels``), a
  relationship whose ``TargetMode`` is anything but Internal (LibreOffice reads
  ``external`` in any case), or whose target has a URI scheme, is removed, except an
  http(s)/mailto hyperlink. Images, OLE links, external workbooks, templates, media and
  frames all go through relationships.
* Legacy binary files (.doc/.xls/.ppt) are not rewritten; the sandbox and LibreOffice's
  own settings are what holds for them.

XML parts are patched in place at byte offsets found by expat (attributes dropped, elements
cut out), so everything else stays byte for byte; a part that is not well-formed, declares
a DTD or is UTF-16 is refused. The whole unpacked size is bounded (ZIP bombs).

This runs in the conversion's sandboxed child (documents._office_child), never in the
server process.
"""

from __future__ import annotations

import re
import shutil
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.parsers import expat

from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind

MAX_UNPACKED = 1 << 30  # bytes of all members together, once inflated
_CHUNK = 1 << 20

XML_NS = "http://www.w3.org/XML/1998/namespace"
_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_DRAW_NS = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_HYPERLINK_ELEMENTS = {(_TEXT_NS, "a"), (_DRAW_NS, "a")}
SAFE_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*):")

# A start tag of a document expat has already found well-formed: name, attributes, end.
_TAG_NAME = re.compile(rb"<[^\s/>]+")
_TAG_ATTR = re.compile(rb"\s*([^\s=/>]+)\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_TAG_CLOSE = re.compile(rb"\s*(/?)>")


class _Refused(Exception):
    """A part we will not hand to LibreOffice (becomes conversion_failed)."""


@dataclass
class LinkReport:
    removed: Counter[str] = field(default_factory=Counter)  # what, e.g. "odf:image", "ooxml:image"

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.removed.items()))


def scheme_of(value: str) -> str | None:
    match = _SCHEME.match(value)
    return match.group(1).lower() if match else None


def is_safe_hyperlink(value: str) -> bool:
    """A link a reader may click, which nothing fetches while converting."""
    return scheme_of(value) in SAFE_LINK_SCHEMES or value.strip().startswith("#")


class _Package:
    """The member names of a package, to tell a package path from anything else."""

    def __init__(self, names: Iterable[str]) -> None:
        self.files = set(names)
        self.dirs = {name[: i] for name in self.files for i, c in enumerate(name) if c == "/"}

    def holds(self, href: str) -> bool:
        """Whether ``href`` names a part (or folder) of this package, relative, no way out."""
        value = href.strip()
        if not value or value.startswith("#"):
            return True  # nothing, or a place in this document
        path = unquote(value)
        if _leaves_package(value) or _leaves_package(path):  # as written, and decoded
            return False
        norm = "/".join(s for s in path.split("/") if s not in ("", "."))
        return bool(norm) and (norm in self.files or norm in self.dirs)


def _leaves_package(path: str) -> bool:
    return (scheme_of(path) is not None or path.startswith("/") or "\\" in path
            or ".." in path.split("/") or any(ord(c) < 32 for c in path))


# --- patching XML at byte offsets --------------------------------------------------------


@dataclass
class _Open:
    remove_from: int | None  # start offset when the whole element goes
    self_closing: bool
    tag_end: int
    scope: dict[str, str]


Decide = Callable[[tuple[str | None, str], list[tuple[str, str | None, str, str]]],
                  tuple[bool, set[str]]]
# (element (namespace, local), [(raw name, namespace, local, value)]) ->
#     (remove the element, raw names of attributes to drop)


def patch_xml(data: bytes, decide: Decide) -> bytes:
    """Apply ``decide`` to every element; drop what it says, keep every other byte."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        raise _Refused("UTF-16 XML part")
    parser = expat.ParserCreate()  # no namespace processing: raw names, resolved below
    parser.ordered_attributes = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Open] = []
    spans: list[tuple[int, int, bytes]] = []  # (start, end, replacement), in document order
    cutting: list[int] = []  # depth of an element being cut out (nothing inside matters)

    def refuse_dtd(*_: Any) -> None:
        raise _Refused("XML part with a DTD")

    def start(name: str, attrs: list[str]) -> None:
        offset = parser.CurrentByteIndex
        scope = stack[-1].scope if stack else {"xml": XML_NS}
        pairs = list(zip(attrs[::2], attrs[1::2], strict=True))
        declared = {(n[6:] if n.startswith("xmlns:") else ""): v
                    for n, v in pairs if n == "xmlns" or n.startswith("xmlns:")}
        if declared:
            scope = {**scope, **declared}
        tag_end, self_closing, raw_attrs = _scan_tag(data, offset)
        element = _resolve(name, scope, default=True)
        resolved = [(n, *_resolve(n, scope, default=False), v) for n, v in pairs]
        remove, drop = (False, set()) if cutting else decide(element, resolved)
        if remove:
            cutting.append(len(stack))
            stack.append(_Open(offset, self_closing, tag_end, scope))
            return
        if drop:
            kept = b"".join(data[s:e] for raw, s, e in raw_attrs
                            if raw.decode("utf-8", "replace") not in drop)
            head = _TAG_NAME.match(data, offset)
            assert head is not None
            rest = raw_attrs[-1][2] if raw_attrs else head.end()
            spans.append((offset, tag_end, head.group(0) + kept + data[rest:tag_end]))
        stack.append(_Open(None, self_closing, tag_end, scope))

    def end(_: str) -> None:
        opened = stack.pop()
        if opened.remove_from is None:
            return
        cutting.pop()
        if opened.self_closing:
            stop = opened.tag_end
        else:
            close = data.index(b">", parser.CurrentByteIndex)
            stop = close + 1
        spans.append((opened.remove_from, stop, b""))

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise _Refused(f"XML part not well-formed: {exc}") from None
    if not spans:
        return data
    out, pos = [], 0
    for s, e, replacement in sorted(spans):
        if s < pos:
            continue  # inside an element already cut out
        out += [data[pos:s], replacement]
        pos = e
    out.append(data[pos:])
    return b"".join(out)


def _resolve(raw: str, scope: dict[str, str], *, default: bool) -> tuple[str | None, str]:
    prefix, _, local = raw.rpartition(":")
    if prefix:
        return scope.get(prefix), local
    return (scope.get("") if default else None), local


def _scan_tag(data: bytes, offset: int) -> tuple[int, bool, list[tuple[bytes, int, int]]]:
    """End offset, whether it is ``<x/>``, and each attribute's (raw name, start, end)."""
    head = _TAG_NAME.match(data, offset)
    if head is None:
        raise _Refused(f"no start tag at byte {offset}")
    pos, attrs = head.end(), []
    while (attr := _TAG_ATTR.match(data, pos)) is not None:
        attrs.append((attr.group(1), attr.start(), attr.end()))
        pos = attr.end()
    close = _TAG_CLOSE.match(data, pos)
    if close is None:
        raise _Refused(f"unreadable start tag at byte {offset}")
    return close.end(), close.group(1) == b"/", attrs


# --- the two families ---------------------------------------------------------------------


def _odf_decider(package: _Package, report: LinkReport) -> Decide:
    def decide(element: tuple[str | None, str],
               attrs: list[tuple[str, str | None, str, str]]) -> tuple[bool, set[str]]:
        drop = set()
        for raw, ns, local, value in attrs:
            if ns == XML_NS and local == "base":
                drop.add(raw)
            elif local == "href":
                if element in _HYPERLINK_ELEMENTS and is_safe_hyperlink(value):
                    continue
                if not package.holds(value):
                    drop.add(raw)
                    report.removed[f"odf:{element[1]}"] += 1
        return False, drop
    return decide


def _rels_decider(report: LinkReport) -> Decide:
    def decide(element: tuple[str | None, str],
               attrs: list[tuple[str, str | None, str, str]]) -> tuple[bool, set[str]]:
        if element[1] != "Relationship":
            return False, set()
        values = {local: value for _, _, local, value in attrs}
        target, kind = values.get("Target", ""), values.get("Type", "").rpartition("/")[2]
        external = values.get("TargetMode", "Internal").strip().lower() != "internal"
        if not external and scheme_of(target) is None:
            return False, set()
        if kind == "hyperlink" and scheme_of(target) in SAFE_LINK_SCHEMES:
            return False, set()
        report.removed[f"ooxml:{kind or 'relationship'}"] += 1
        return True, set()
    return decide


_ODF_KINDS = {FileKind.ODT, FileKind.ODS, FileKind.ODP}
_OOXML_KINDS = {FileKind.DOCX, FileKind.XLSX, FileKind.PPTX}


def neutralise(src: Path, dst: Path, kind: FileKind, max_unpacked: int = MAX_UNPACKED
               ) -> LinkReport:
    """Write ``src`` to ``dst`` without external links; raises DocumentRejected."""
    report = LinkReport()
    if kind not in _ODF_KINDS | _OOXML_KINDS:
        shutil.copyfile(src, dst)  # nothing we can rewrite; see the module docstring
        return report
    try:
        _rewrite(src, dst, kind, max_unpacked, report)
    except _Refused as exc:
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, str(exc)[:500]) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError, ValueError) as exc:
        # RuntimeError: a member encrypted in the ZIP; NotImplementedError: an unknown method
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, f"package: {exc!r}"[:500]) from None
    return report


def _rewrite(src: Path, dst: Path, kind: FileKind, limit: int, report: LinkReport) -> None:
    budget = limit
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED,
                                                      compresslevel=1) as zout, \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # kept on purpose
        package = _Package(zin.namelist())
        odf = _odf_decider(package, report)
        rels = _rels_decider(report)
        for info in zin.infolist():  # every entry, duplicates too: LibreOffice may read any
            out = zipfile.ZipInfo(info.filename, info.date_time)
            out.external_attr = info.external_attr
            out.compress_type = (zipfile.ZIP_STORED if info.compress_type == zipfile.ZIP_STORED
                                 else zipfile.ZIP_DEFLATED)  # ODF wants "mimetype" stored
            name = info.filename.lower()
            decide = (odf if kind in _ODF_KINDS and name.endswith(".xml") else
                      rels if kind in _OOXML_KINDS and name.endswith(".rels") else None)
            with zin.open(info) as fin:
                if decide is not None:
                    data = fin.read(budget + 1)
                    budget -= len(data)
                    if budget < 0:
                        raise _Refused(f"unpacks to more than {limit} bytes")
                    zout.writestr(out, patch_xml(data, decide))
                    continue
                with zout.open(out, "w") as fout:
                    while chunk := fin.read(_CHUNK):
                        budget -= len(chunk)
                        if budget < 0:
                            raise _Refused(f"unpacks to more than {limit} bytes")
                        fout.write(chunk)
