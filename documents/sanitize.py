"""Make the copy of a PDF that is distributed to delegates' tablets.

Removes what a hostile or careless PDF can *do* when opened in a full reader,
by allow-list rather than by a list of known-bad things:

* actions: only ``GoTo`` (internal destinations), ``URI`` whose target is
  http(s)/mailto after the whitespace and control characters browsers ignore are
  dropped, and the four page-turning ``Named`` actions survive; anything else
  (Launch, JavaScript, SubmitForm, ResetForm, ImportData, GoToR/GoToE/GoToDp,
  Rendition, RichMediaExecute, Sound, Movie, Hide, SetOCGState, unknown types)
  is removed wherever it is: ``/A``, ``/PA``, ``/OpenAction`` (which keeps only a
  destination or a GoTo), ``/Next`` chains, outline items, form fields, inline
  in an ``/Annots`` array or as an indirect object;
* automatic actions (``/AA``) everywhere, JavaScript (``/JS``), XFA, embedded
  and associated files (``/EF``, ``/AF``, the ``EmbeddedFiles`` name tree),
  portfolios, the catalog's ``/URI`` base, every name tree but ``Dests``;
* annotations whose subtype is not on the list of plain markup (Text, Link,
  FreeText, shapes, text markup, Stamp, Ink, Popup, Widget, ...): file
  attachments, sound, movie, screen, rich media, 3D and unknown subtypes go.

The file is first read and rewritten by MuPDF, so the copy holds exactly what the
page images were rendered from (no second parser's idea of a damaged file), then
walked object by object, inline dictionaries and arrays included, with pikepdf
(qpdf), saved, and checked again: MuPDF must find the same pages, and a second
walk must find nothing to remove. Runs in a worker (it parses the whole file).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pikepdf
import pymupdf

SAFE_SCHEMES = ("http", "https", "mailto")
SAFE_NAMED = frozenset({"/NextPage", "/PrevPage", "/FirstPage", "/LastPage"})
ACTION_TYPES = frozenset({  # PDF 2.0, 12.6.4, plus RichMediaExecute (ISO 32000-2 13.7)
    "/GoTo", "/GoToR", "/GoToE", "/GoToDp", "/Launch", "/Thread", "/URI", "/Sound", "/Movie",
    "/Hide", "/Named", "/SubmitForm", "/ResetForm", "/ImportData", "/SetOCGState",
    "/Rendition", "/Trans", "/GoTo3DView", "/JavaScript", "/RichMediaExecute", "/ECMAScript",
})  # fmt: skip
SAFE_ANNOTS = frozenset({
    "/Text", "/Link", "/FreeText", "/Line", "/Square", "/Circle", "/Polygon", "/PolyLine",
    "/Highlight", "/Underline", "/Squiggly", "/StrikeOut", "/Stamp", "/Caret", "/Ink",
    "/Popup", "/Widget", "/Redact", "/Watermark", "/PrinterMark", "/TrapNet",
})  # fmt: skip
# Keys dropped wherever they occur: (key, report label).
DROP_KEYS = {
    "/AA": "additional_actions",
    "/JS": "javascript",
    "/EF": "embedded_files",
    "/AF": "embedded_files",
    "/XFA": "xfa_forms",
    "/RichMediaContent": "rich_media",
}
# Catalog keys that go: portfolio, base URI for relative links, page-open automation.
DROP_CATALOG = {"/Collection": "portfolio", "/URI": "unsafe_links"}
KEEP_NAME_TREES = frozenset({"/Dests"})
# qpdf reports what it repairs in a damaged file as errors (to stderr, in a worker):
# the file's problems, not the server's, and a way to flood the log. Silenced.
logging.getLogger("pikepdf._core").setLevel(logging.CRITICAL)

_ARRAY = pikepdf.ObjectType.array
_CONTAINERS = frozenset({pikepdf.ObjectType.dictionary, pikepdf.ObjectType.stream, _ARRAY})
_IGNORED_IN_URI = re.compile(r"[\x00-\x20\x7f]")  # what URL parsers strip or skip


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


def temp_paths(dst: str, tag: str) -> tuple[str, str]:
    """The temporary files sanitize_pdf(src, dst, tag) may leave if it is killed."""
    return f"{dst}.tmp-{tag}-read", f"{dst}.tmp-{tag}"


def sanitize_pdf(src: str, dst: str, tag: str | None = None) -> SanitizeReport:
    """Write a sanitised copy of ``src`` to ``dst`` (atomically) and verify it.

    ``tag`` names the temporary files (temp_paths), which the caller removes if the
    worker is killed before it finishes."""
    read, out = temp_paths(dst, tag or str(os.getpid()))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        with pymupdf.open(src, filetype="pdf") as doc:
            if doc.needs_pass:
                raise SanitizeError("encrypted document")
            pages = doc.page_count
            doc.save(read, garbage=1)  # MuPDF's reading, repaired, object streams expanded
        removed: Counter[str] = Counter()
        with pikepdf.open(read) as pdf:
            clean(pdf, removed)
            pdf.save(out, compress_streams=True)
        _verify(out, pages)
        os.replace(out, dst)
    finally:
        for path in (read, out):
            Path(path).unlink(missing_ok=True)
    return SanitizeReport(dst, pages, {k: v for k, v in removed.items() if v})


def clean(pdf: pikepdf.Pdf, removed: Counter[str]) -> None:
    """Apply the allow-list to every object of ``pdf`` in place, counting what goes.

    Unsafe actions and annotations that are indirect objects are found first, then every
    reference to them is removed where it is (so each is counted once, at its use), and
    finally they are emptied, for any reference the walk could not see."""
    _clean_catalog(pdf.Root, removed)
    objects = [obj for obj in pdf.objects if _is_container(obj)]
    doomed = {obj.objgen for obj in objects
              if obj._type_code is not _ARRAY and (_is_unsafe_action(obj)
                                                   or _is_unsafe_annot(obj))}
    for obj in objects:
        if obj.objgen not in doomed:
            _clean_tree(obj, removed, doomed)
    for obj in objects:
        if obj.objgen in doomed:
            _empty(obj)


def _clean_catalog(root: Any, removed: Counter[str]) -> None:
    for key, label in DROP_CATALOG.items():
        if key in root:
            del root[key]
            removed[label] += 1
    if "/OpenAction" in root:
        action = root.OpenAction
        is_goto = isinstance(action, pikepdf.Dictionary) and action.get("/S") == "/GoTo" \
            and "/Next" not in action
        if not (isinstance(action, pikepdf.Array) or is_goto):  # a destination, or GoTo it
            del root["/OpenAction"]
            removed["open_action"] += 1
    if root.get("/PageMode") == "/UseAttachments":
        root.PageMode = pikepdf.Name.UseNone
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary):
        for key in list(names.keys()):
            if key not in KEEP_NAME_TREES:
                del names[key]
                removed[{"/JavaScript": "javascript",
                         "/EmbeddedFiles": "embedded_files"}.get(key, "name_trees")] += 1


def _clean_tree(top: Any, removed: Counter[str], doomed: set[tuple[int, int]]) -> None:
    """Clean ``top`` and the direct objects inside it (indirect ones are cleaned on their
    own turn). Iterative, so no nesting depth can exhaust the stack."""
    stack = [top]
    while stack:
        node = stack.pop()
        if node._type_code is _ARRAY:
            for i in reversed(range(len(node))):
                if _keep_walking(node[i], removed, doomed, stack):
                    del node[i]
            continue
        for key in list(node.keys()):
            if key in DROP_KEYS:
                del node[key]
                removed[DROP_KEYS[key]] += 1
            elif _keep_walking(node[key], removed, doomed, stack):
                del node[key]


def _keep_walking(value: Any, removed: Counter[str], doomed: set[tuple[int, int]],
                  stack: list[Any]) -> bool:
    """True if ``value`` (an array element or dictionary entry) must go; else queue it if it
    is a direct container. (pikepdf's _type_code: ~4x cheaper than isinstance.)"""
    kind = getattr(value, "_type_code", None)  # scalars come back as Python ints, bools
    if kind not in _CONTAINERS:
        return False
    if value.is_indirect:
        return value.objgen in doomed and _unsafe_value(value, removed)
    if kind is not _ARRAY and _unsafe_value(value, removed):
        return True
    stack.append(value)
    return False


def _unsafe_value(value: Any, removed: Counter[str]) -> bool:
    """Is the dictionary ``value`` an action or annotation that must go? Counts it where
    it is found."""
    if _is_unsafe_action(value):
        removed["javascript" if value.get("/S") == "/JavaScript" else "unsafe_actions"] += 1
        return True
    if _is_unsafe_annot(value):
        removed["unsafe_annotations"] += 1
        return True
    return False


def _is_container(value: Any) -> bool:
    return getattr(value, "_type_code", None) in _CONTAINERS


def _is_unsafe_action(d: Any) -> bool:
    kind = d.get("/S")
    if not (d.get("/Type") == "/Action" or (isinstance(kind, pikepdf.Name)
                                            and str(kind) in ACTION_TYPES)):
        return False  # not an action (border styles, page labels, transitions use /S too)
    if kind == "/GoTo":
        return not isinstance(d.get("/D"), pikepdf.Array | pikepdf.Name | pikepdf.String)
    if kind == "/URI":
        return not safe_uri(d.get("/URI"))
    if kind == "/Named":
        return str(d.get("/N")) not in SAFE_NAMED
    return True


def _is_unsafe_annot(d: Any) -> bool:
    if d.get("/Type") != "/Annot" and not _in_annots_shape(d):
        return False
    return str(d.get("/Subtype")) not in SAFE_ANNOTS


def _in_annots_shape(d: Any) -> bool:
    """/Type is optional for annotations: /Subtype plus /Rect is one."""
    return "/Subtype" in d and "/Rect" in d and "/BBox" not in d  # not a form XObject


def _empty(obj: Any) -> None:
    for key in list(obj.keys()):
        if key != "/Length":
            del obj[key]


def safe_uri(value: Any) -> bool:
    """An http(s)/mailto URI, judged as a browser would read it."""
    if not isinstance(value, pikepdf.String):
        return False
    raw = bytes(value)
    if raw[:2] in (b"\xfe\xff", b"\xff\xfe"):
        text = raw.decode("utf-16", "replace")
    elif raw[:3] == b"\xef\xbb\xbf":
        text = raw[3:].decode("utf-8", "replace")
    else:
        text = raw.decode("latin-1")
    scheme, colon, _ = _IGNORED_IN_URI.sub("", text).partition(":")
    return bool(colon) and scheme.lower() in SAFE_SCHEMES


def _verify(path: str, expected_pages: int) -> None:
    with pymupdf.open(path, filetype="pdf") as doc:
        if doc.page_count != expected_pages:
            raise SanitizeError(f"sanitised copy has {doc.page_count} pages, not {expected_pages}")
    leftover: Counter[str] = Counter()
    with pikepdf.open(path) as pdf:
        clean(pdf, leftover)
    if leftover:
        raise SanitizeError(f"sanitised copy still has {dict(leftover)}")
