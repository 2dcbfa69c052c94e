"""The package rewrite that removes an Office file's external links (no LibreOffice here)."""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documents import office_links
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind
from tests.documents import office_corpus as oc

URL = "http://127.0.0.1:9/x"
XLINK = "{http://www.w3.org/1999/xlink}href"


def rewrite(tmp_path: Path, data: bytes, kind: FileKind, **kw: int
            ) -> tuple[dict[str, bytes], dict[str, int], list[zipfile.ZipInfo]]:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(data)
    report = office_links.neutralise(src, dst, kind, **kw)
    with zipfile.ZipFile(dst) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}, report.as_dict(), zf.infolist()


def hrefs(xml: bytes) -> list[str]:
    return [e.attrib[XLINK] for e in ElementTree.fromstring(xml).iter() if XLINK in e.attrib]


def relationships(xml: bytes) -> list[dict[str, str]]:
    return [dict(e.attrib) for e in ElementTree.fromstring(xml)]


# --- OpenDocument ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [
    URL, "file:///etc/hopso/secret.png", "../../../../var/lib/hopso/page.jpg", "/etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd", "\\\\server\\share\\x.png", "smb://server/x", " http://x/",
    "Pictures/missing.png", "vnd.sun.star.script:Standard.Module1.Main?location=document",
])
@pytest.mark.parametrize("builder", [oc.odt_linked_image, oc.odt_linked_ole,
                                     oc.odt_linked_section])
def test_odf_links_outside_the_package_are_removed(tmp_path: Path, builder: oc.Builder,
                                                   target: str) -> None:
    members, removed, _ = rewrite(tmp_path, builder(target.replace("&", "&amp;")), FileKind.ODT)
    assert hrefs(members["content.xml"]) == []
    assert sum(removed.values()) == 1, removed


def test_odf_package_parts_and_hyperlinks_stay_byte_for_byte(tmp_path: Path) -> None:
    image = b"\x89PNG not really"
    body = ('<text:p><text:a xlink:href="https://hopso.example/tai-lieu">web</text:a>'
            '<text:a xlink:href="mailto:vanthu@quangbinh.gov.vn">thư</text:a>'
            '<text:a xlink:href="#Mục 2">mục</text:a></text:p>'
            '<text:p><draw:frame draw:name="a"><draw:image xlink:href="Pictures/a.png"/>'
            '</draw:frame><draw:frame draw:name="b"><draw:object xlink:href="./Object 1"/>'
            '</draw:frame><draw:frame draw:name="c"><draw:image xlink:href="Object%201/p.png"/>'
            "</draw:frame></text:p>")
    data = oc.odt(body, {"Pictures/a.png": image, "Object 1/content.xml": "<x/>",
                         "Object 1/p.png": image})
    members, removed, infos = rewrite(tmp_path, data, FileKind.ODT)
    with zipfile.ZipFile(io.BytesIO(data)) as original:
        assert members == {i.filename: original.read(i) for i in original.infolist()}
    assert removed == {}
    assert infos[0].filename == "mimetype" and infos[0].compress_type == zipfile.ZIP_STORED


def test_odf_rewrite_touches_only_the_links(tmp_path: Path) -> None:
    body = ('<text:p><text:a xlink:href="javascript:alert(1)" text:style-name="L">bấm</text:a>'
            '<text:a xlink:href="file:///etc/passwd">tệp</text:a></text:p>'
            f'<text:p xml:base="http://127.0.0.1:9/">{oc.TEXT}</text:p>'
            + oc.frame(f'<draw:image  xlink:type="simple"\n xlink:href=\'{URL}\' '
                        'xlink:show="embed" />'))
    members, removed, _ = rewrite(tmp_path, oc.odt(body), FileKind.ODT)
    content = members["content.xml"].decode()
    assert "javascript" not in content and "file:" not in content and "127.0.0.1" not in content
    assert removed == {"odf:a": 2, "odf:image": 1}
    assert '<text:a text:style-name="L">bấm</text:a>' in content
    assert '<draw:image  xlink:type="simple" xlink:show="embed" />' in content
    assert f"<text:p>{oc.TEXT}</text:p>" in content


def test_odf_links_in_every_xml_part_and_duplicate_entries(tmp_path: Path) -> None:
    styles = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-styles {oc.ODF_NS}>'
              f'<draw:fill-image draw:name="bg" xlink:href="{URL}"/></office:document-styles>')
    data = oc.odt("", {"styles.xml": styles, "Object 1/content.xml": styles})
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("content.xml", styles)
    _, removed, infos = rewrite(tmp_path, buf.getvalue(), FileKind.ODT)
    assert removed == {"odf:fill-image": 3}
    assert [i.filename for i in infos].count("content.xml") == 2
    assert URL.encode() not in Path(tmp_path / "out").read_bytes()


# --- Office Open XML ------------------------------------------------------------------------


@pytest.mark.parametrize("builder", [oc.docx_external_image, oc.docx_linked_ole,
                                     oc.docx_attached_template])
def test_docx_external_relationships_are_removed(tmp_path: Path, builder: oc.Builder) -> None:
    members, removed, _ = rewrite(tmp_path, builder(URL), FileKind.DOCX)
    everything = b"".join(members.values())
    assert b"127.0.0.1" not in everything and b'TargetMode="External"' not in everything
    assert removed, removed


def test_ooxml_relationship_rules(tmp_path: Path) -> None:
    part = oc.rels(
        ("r1", "image", URL, "external"),  # LibreOffice honours any case
        ("r2", "image", " External ", "  EXTERNAL "),
        ("r3", "image", "file:///etc/passwd", None),  # a scheme without TargetMode
        ("r4", "hyperlink", "https://quangbinh.gov.vn/", "External"),
        ("r5", "hyperlink", "mailto:vanthu@quangbinh.gov.vn", "External"),
        ("r6", "hyperlink", "javascript:alert(1)", "External"),
        ("r7", "hyperlink", "file:///etc/passwd", "External"),
        ("r8", "image", "media/image1.png", None),
        ("r9", "image", "media/image2.png", "Internal"),
        ("r10", "styles", "styles.xml", None),
    ).replace('<Relationship Id="r10"', '<Relationship Id="r11" Type="x/oleObject" '
              f'Target="{URL}" TargetMode="External"></Relationship><Relationship Id="r10"')
    data = oc.docx("", part)
    members, removed, _ = rewrite(tmp_path, data, FileKind.DOCX)
    kept = relationships(members["word/_rels/document.xml.rels"])
    assert [r["Id"] for r in kept] == ["r4", "r5", "r8", "r9", "r10"]
    assert removed == {"ooxml:hyperlink": 2, "ooxml:image": 3, "ooxml:oleObject": 1}
    with zipfile.ZipFile(io.BytesIO(data)) as original:
        assert members["word/document.xml"] == original.read("word/document.xml")


def test_xlsx_and_pptx_external_relationships_are_removed(tmp_path: Path) -> None:
    members, removed, _ = rewrite(tmp_path, oc.xlsx_external_link(URL), FileKind.XLSX)
    assert relationships(members["xl/externalLinks/_rels/externalLink1.xml.rels"]) == []
    assert removed == {"ooxml:externalLinkPath": 1}
    members, removed, _ = rewrite(tmp_path, oc.pptx_external_image(URL), FileKind.PPTX)
    assert relationships(members["ppt/slides/_rels/slide1.xml.rels"]) == []
    assert removed == {"ooxml:image": 1}


def test_legacy_binary_files_are_copied_as_they_are(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + URL.encode("utf-16-le") * 10
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(data)
    assert office_links.neutralise(src, dst, FileKind.OLE).as_dict() == {}
    assert dst.read_bytes() == data


# --- what is refused ------------------------------------------------------------------------

_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
           + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
           + ']><r xmlns:xlink="http://www.w3.org/1999/xlink">&j;</r>')


@pytest.mark.parametrize("case,part", [
    ("billion laughs", _LAUGHS.encode()),
    ("external entity", b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/d.dtd"><r/>'),
    ("utf-16", '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode("utf-16")),
    ("not xml", b"\x00\x01 <<<>>> garbage"),
    ("truncated", b'<?xml version="1.0"?><office:document-content><office:body>'),
])
def test_parts_we_cannot_read_safely_are_refused(tmp_path: Path, case: str, part: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(DocumentRejected) as info:
        rewrite(tmp_path, oc.odt("", {"styles.xml": part}), FileKind.ODT)
    assert info.value.code is RejectCode.CONVERSION_FAILED
    assert time.monotonic() - started < 2, case  # no entity is ever expanded


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    data = oc.odt("", {"Pictures/zeros.bin": bytes(5 << 20)})  # 5 MiB that packs to ~5 KiB
    assert len(data) < 64 << 10
    with pytest.raises(DocumentRejected, match="unpacks to more than"):
        rewrite(tmp_path, data, FileKind.ODT, max_unpacked=4 << 20)
    with pytest.raises(DocumentRejected, match="unpacks to more than"):
        rewrite(tmp_path, oc.docx("", oc.rels(("r1", "image", URL, "External")) + " " * (5 << 20)),
                FileKind.DOCX, max_unpacked=4 << 20)
    members, _, _ = rewrite(tmp_path, data, FileKind.ODT, max_unpacked=6 << 20)
    assert members["Pictures/zeros.bin"] == bytes(5 << 20)


def test_a_damaged_zip_is_refused(tmp_path: Path) -> None:
    data = oc.docx_external_image(URL)
    with pytest.raises(DocumentRejected) as info:
        rewrite(tmp_path, data[: len(data) // 2], FileKind.DOCX)
    assert info.value.code is RejectCode.CONVERSION_FAILED


# --- property: whatever the href, what is left points into the package --------------------

_HREF_CHARS = st.sampled_from(list("aPx./\\:%2e#?&;=- ") + ["Pictures/a.png", "..", "http:",
                                                              "file:", "//", "%2F", "Object 1"])


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_HREF_CHARS, max_size=8).map("".join), min_size=1, max_size=4),
       st.sampled_from(["draw:image", "draw:object", "text:section-source", "text:a"]))
def test_every_href_left_names_a_part_or_is_a_safe_hyperlink(
        tmp_path: Path, targets: list[str], element: str) -> None:
    escaped = [t.replace("&", "&amp;") for t in targets]
    body = "".join(f'<text:p><{element} xlink:href="{t}"/></text:p>' for t in escaped)
    data = oc.odt(body, {"Pictures/a.png": b"png", "Object 1/content.xml": "<x/>"})
    members, _, _ = rewrite(tmp_path, data, FileKind.ODT)
    names = set(members)
    for href in hrefs(members["content.xml"]):
        if element == "text:a" and office_links.is_safe_hyperlink(href):
            continue
        if not href.strip() or href.strip().startswith("#"):
            continue
        assert not re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*:", href), href
        assert ".." not in href and not href.startswith("/") and "\\" not in href, href
        assert not unquote(href).startswith("/"), href
        path = "/".join(s for s in unquote(href).split("/") if s not in ("", "."))
        assert path in names or any(n.startswith(path + "/") for n in names), href
