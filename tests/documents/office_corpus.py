"""Office files that link to things outside themselves (built on the fly, never committed).

Each builder takes the URL (or path) the document links to and returns the file's bytes.
What is linked is what LibreOffice 7.4 was seen to fetch while converting (an ODT's linked
image and OLE object, OOXML images through an external relationship, a .doc's linked
picture) plus what it might (sections, external workbooks, templates, OLE links).
Every document also carries TEXT, so a test can check it still converts.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from documents import _office_child
from documents.validation import FileKind

TEXT = "Báo cáo tình hình kinh tế – xã hội quý IV"

REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
_SML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PML = "http://schemas.openxmlformats.org/presentationml/2006/main"
ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
          'xmlns:xlink="http://www.w3.org/1999/xlink"')
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


def zip_package(members: dict[str, str | bytes], stored: tuple[str, ...] = ("mimetype",)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            raw = data.encode("utf-8") if isinstance(data, str) else data
            zf.writestr(name, raw,
                        compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def rels(*entries: tuple[str, str, str, str | None]) -> str:
    """A relationship part: (id, type suffix, target, TargetMode or None)."""
    body = "".join(f'<Relationship Id="{i}" Type="{REL}/{t}" Target="{target}"'
                   + (f' TargetMode="{mode}"' if mode else "") + "/>"
                   for i, t, target, mode in entries)
    return f'{_XML}<Relationships xmlns="{PKG}">{body}</Relationships>'


def _types(overrides: dict[str, str]) -> str:
    parts = "".join(f'<Override PartName="/{n}" ContentType="{t}"/>' for n, t in overrides.items())
    return (f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>' + parts + "</Types>")


# --- OpenDocument ------------------------------------------------------------------------


def odt(body: str, extra: dict[str, str | bytes] | None = None) -> bytes:
    mime = "application/vnd.oasis.opendocument.text"
    manifest = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
    return zip_package({
        "mimetype": mime,
        "META-INF/manifest.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="{manifest}"'
            f' manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
            f'manifest:media-type="{mime}"/><manifest:file-entry manifest:full-path="content.xml"'
            ' manifest:media-type="text/xml"/></manifest:manifest>'),
        "content.xml": (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS} '
                        f'office:version="1.2"><office:body><office:text><text:p>{TEXT}</text:p>'
                        f"{body}</office:text></office:body></office:document-content>"),
        **(extra or {}),
    })


def frame(inner: str) -> str:
    return ('<text:p><draw:frame draw:name="f" text:anchor-type="paragraph" svg:width="5cm" '
            f'svg:height="5cm">{inner}</draw:frame></text:p>')


def odt_linked_image(url: str) -> bytes:
    return odt(frame(f'<draw:image xlink:href="{url}" xlink:type="simple" xlink:show="embed" '
                      'xlink:actuate="onLoad"/>'))


def odt_linked_ole(url: str) -> bytes:
    return odt(frame(f'<draw:object xlink:href="{url}" xlink:type="simple" xlink:show="embed" '
                      'xlink:actuate="onLoad"/>'))


def odt_linked_section(url: str) -> bytes:
    return odt(f'<text:section text:name="S1"><text:section-source xlink:href="{url}" '
               'xlink:type="simple" text:filter-name="Text"/><text:p>cached</text:p></text:section>')


# --- Office Open XML ---------------------------------------------------------------------


def docx(body: str, document_rels: str, extra: dict[str, str | bytes] | None = None) -> bytes:
    ns = (f'xmlns:w="{_W}" xmlns:r="{REL}" xmlns:a="{_A}" '
          'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
          'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture" '
          'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office"')
    return zip_package({
        "[Content_Types].xml": _types({"word/document.xml": "application/vnd.openxmlformats-"
                                       "officedocument.wordprocessingml.document.main+xml"}),
        "_rels/.rels": rels(("rId1", "officeDocument", "word/document.xml", None)),
        "word/document.xml": (f"{_XML}<w:document {ns}><w:body><w:p><w:r><w:t>{TEXT}</w:t></w:r>"
                              f"</w:p>{body}</w:body></w:document>"),
        "word/_rels/document.xml.rels": document_rels,
        **(extra or {}),
    })


def _blip_drawing(link_id: str) -> str:
    return ('<w:p><w:r><w:drawing><wp:inline><wp:extent cx="1905000" cy="1905000"/>'
            '<wp:docPr id="1" name="P"/><a:graphic><a:graphicData '
            'uri="http://schemas.openxmlformats.org/drawingml/2006/picture"><pic:pic>'
            '<pic:nvPicPr><pic:cNvPr id="0" name="x.png"/><pic:cNvPicPr/></pic:nvPicPr>'
            f'<pic:blipFill><a:blip r:link="{link_id}"/><a:stretch><a:fillRect/></a:stretch>'
            '</pic:blipFill><pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="1905000" '
            'cy="1905000"/></a:xfrm><a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr>'
            "</pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>")


def docx_external_image(url: str, mode: str = "External") -> bytes:
    return docx(_blip_drawing("rId7"), rels(("rId7", "image", url, mode)))


def docx_linked_ole(url: str) -> bytes:
    body = ('<w:p><w:r><w:object w:dxaOrig="1000" w:dyaOrig="1000"><v:shape id="s1" '
            'style="width:50pt;height:50pt" o:ole=""><v:imagedata r:id="rId9" o:title=""/>'
            '</v:shape><o:OLEObject Type="Link" ProgID="Word.Document.12" ShapeID="s1" '
            'DrawAspect="Content" r:id="rId8" UpdateMode="Always"/></w:object></w:r></w:p>')
    return docx(body, rels(("rId8", "oleObject", url, "External"),
                           ("rId9", "image", url + "/preview.png", "External")))


def docx_attached_template(url: str) -> bytes:
    settings = f'{_XML}<w:settings xmlns:w="{_W}" xmlns:r="{REL}"><w:attachedTemplate r:id="rId1"/></w:settings>'
    return docx("", rels(("rIdS", "settings", "settings.xml", None)), {
        "word/settings.xml": settings,
        "word/_rels/settings.xml.rels": rels(("rId1", "attachedTemplate", url, "External"))})


def xlsx_external_link(url: str) -> bytes:
    book = (f'{_XML}<externalLink xmlns="{_SML}" xmlns:r="{REL}"><externalBook r:id="rId1">'
            '<sheetNames><sheetName val="Data"/></sheetNames><sheetDataSet><sheetData sheetId="0">'
            '<row r="1"><cell r="A1"><v>42</v></cell></row></sheetData></sheetDataSet>'
            "</externalBook></externalLink>")
    sheet = (f'{_XML}<worksheet xmlns="{_SML}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is>'
             f'<t>{TEXT}</t></is></c></row><row r="2"><c r="A2"><f>[1]Data!A1</f></c></row>'
             "</sheetData></worksheet>")
    kind = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    return zip_package({
        "[Content_Types].xml": _types({
            "xl/workbook.xml": f"{kind}.sheet.main+xml",
            "xl/worksheets/sheet1.xml": f"{kind}.worksheet+xml",
            "xl/externalLinks/externalLink1.xml": f"{kind}.externalLink+xml"}),
        "_rels/.rels": rels(("rId1", "officeDocument", "xl/workbook.xml", None)),
        "xl/workbook.xml": (f'{_XML}<workbook xmlns="{_SML}" xmlns:r="{REL}"><sheets>'
                            '<sheet name="S" sheetId="1" r:id="rId1"/></sheets><externalReferences>'
                            '<externalReference r:id="rId2"/></externalReferences></workbook>'),
        "xl/_rels/workbook.xml.rels": rels(
            ("rId1", "worksheet", "worksheets/sheet1.xml", None),
            ("rId2", "externalLink", "externalLinks/externalLink1.xml", None)),
        "xl/worksheets/sheet1.xml": sheet,
        "xl/externalLinks/externalLink1.xml": book,
        "xl/externalLinks/_rels/externalLink1.xml.rels": rels(
            ("rId1", "externalLinkPath", url, "External")),
    })


def pptx_external_image(url: str) -> bytes:
    slide = (f'{_XML}<p:sld xmlns:p="{_PML}" xmlns:a="{_A}" xmlns:r="{REL}"><p:cSld><p:spTree>'
             '<p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr>'
             '<p:grpSpPr/><p:sp><p:nvSpPr><p:cNvPr id="3" name="t"/><p:cNvSpPr/><p:nvPr/>'
             '</p:nvSpPr><p:spPr><a:xfrm><a:off x="500000" y="3000000"/><a:ext cx="8000000" '
             'cy="1000000"/></a:xfrm><a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr>'
             f'<p:txBody><a:bodyPr/><a:p><a:r><a:t>{TEXT}</a:t></a:r></a:p></p:txBody></p:sp>'
             '<p:pic><p:nvPicPr><p:cNvPr id="2" name="x"/><p:cNvPicPr/><p:nvPr/></p:nvPicPr>'
             '<p:blipFill><a:blip r:link="rId2"/><a:stretch><a:fillRect/></a:stretch></p:blipFill>'
             '<p:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="1905000" cy="1905000"/></a:xfrm>'
             '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr></p:pic>'
             "</p:spTree></p:cSld></p:sld>")
    kind = "application/vnd.openxmlformats-officedocument.presentationml"
    return zip_package({
        "[Content_Types].xml": _types({"ppt/presentation.xml": f"{kind}.presentation.main+xml",
                                       "ppt/slides/slide1.xml": f"{kind}.slide+xml"}),
        "_rels/.rels": rels(("rId1", "officeDocument", "ppt/presentation.xml", None)),
        "ppt/presentation.xml": (f'{_XML}<p:presentation xmlns:p="{_PML}" xmlns:r="{REL}">'
                                 '<p:sldIdLst><p:sldId id="256" r:id="rId2"/></p:sldIdLst>'
                                 '<p:sldSz cx="9144000" cy="6858000"/>'
                                 '<p:notesSz cx="6858000" cy="9144000"/></p:presentation>'),
        "ppt/_rels/presentation.xml.rels": rels(("rId2", "slide", "slides/slide1.xml", None)),
        "ppt/slides/slide1.xml": slide,
        "ppt/slides/_rels/slide1.xml.rels": rels(("rId2", "image", url, "External")),
    })


def legacy_doc_linked_image(url: str, soffice: str) -> bytes:
    """A Word 97 .doc with a linked picture, saved by the real LibreOffice from an ODT.

    A binary file we cannot rewrite: only the sandbox and the profile stand between it
    and the URL. Saved with the hardened profile, so making it fetches nothing.
    """
    with tempfile.TemporaryDirectory(prefix="hopso-test-doc-") as tmp:
        work = Path(tmp)
        (work / "linked.odt").write_bytes(odt_linked_image(url))
        _office_child.write_profile(work / "profile")
        subprocess.run([soffice, "--headless", "--norestore",
                        f"-env:UserInstallation={(work / 'profile').as_uri()}",
                        "--convert-to", "doc", "--outdir", str(work), str(work / "linked.odt")],
                       check=True, capture_output=True, timeout=120,
                       env={"HOME": str(work), "PATH": "/usr/bin:/bin"})
        data = (work / "linked.doc").read_bytes()
    assert url.encode("utf-16-le") in data, "LibreOffice did not keep the link in the .doc"
    return data


Builder = Callable[[str], bytes]
# name -> (builder, kind, file name): everything a conversion must not fetch
LINKED: dict[str, tuple[Builder, FileKind, str]] = {
    "odt-image": (odt_linked_image, FileKind.ODT, "Ảnh liên kết.odt"),
    "odt-ole": (odt_linked_ole, FileKind.ODT, "Đối tượng OLE.odt"),
    "odt-section": (odt_linked_section, FileKind.ODT, "Mục liên kết.odt"),
    "docx-image": (docx_external_image, FileKind.DOCX, "Ảnh ngoài.docx"),
    "docx-image-lowercase": (lambda u: docx_external_image(u, "external"), FileKind.DOCX,
                             "Ảnh ngoài 2.docx"),
    "docx-ole": (docx_linked_ole, FileKind.DOCX, "OLE liên kết.docx"),
    "docx-template": (docx_attached_template, FileKind.DOCX, "Mẫu ngoài.docx"),
    "xlsx-external": (xlsx_external_link, FileKind.XLSX, "Bảng liên kết.xlsx"),
    "pptx-image": (pptx_external_image, FileKind.PPTX, "Trình chiếu.pptx"),
}
