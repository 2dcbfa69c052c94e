"""Meeting minutes ("biên bản") as PDF, in the Decree 30/2020/NĐ-CP layout.

Layout: A4, margins top/bottom 20 mm, left 30 mm, right 15 mm; header table
with the issuing body (left) and the national motto (right), a short rule
under the unit name and a full-length rule under "Độc lập - Tự do - Hạnh
phúc"; page numbers centred at the top from page 2; body 13 pt.

The header is drawn by hand from font metrics: MuPDF's Story table layout
does not honour column widths, and the motto must sit on one line with a rule
exactly as long as it. The body flows through MuPDF's Story (HTML + CSS) with
the fonts passed in an Archive, so they are embedded (then subset) and the
Vietnamese text extracts back exactly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from html import escape

import pymupdf

from rooms.minutes_data import (
    Attendee,
    MinutesData,
    Speaker,
    VoteBaseKind,
    VoteMethod,
    VoteOption,
    VoteResult,
)

from . import fonts
from .fonts import FontFamily, FontStyle

MOTTO_1 = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO_2 = "Độc lập - Tự do - Hạnh phúc"
MM = 72 / 25.4
PAGE = pymupdf.paper_rect("a4")
BODY = pymupdf.Rect(30 * MM, 20 * MM, PAGE.width - 15 * MM, PAGE.height - 20 * MM)
BODY_PT = 13.0
MAX_PAGES = 200  # guards the layout loop against content that never fits
LEFT_COL = 0.42  # header column split; the motto needs the wider right column


# --- Vietnamese formatting ---------------------------------------------------


def format_date_line(place: str, day: date) -> str:
    """Decree 30: zero-pad days below 10 and months 1-2 only."""
    month = f"{day.month:02d}" if day.month < 3 else str(day.month)
    return f"{place}, ngày {day.day:02d} tháng {month} năm {day.year}"


def format_duration(seconds: int) -> str:
    hours, rest = divmod(max(int(seconds), 0), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} giờ"] if hours else []
    if minutes:
        parts.append(f"{minutes} phút")
    if secs or not parts:
        parts.append(f"{secs} giây")
    return " ".join(parts)


def format_percent(count: int, total: int) -> str:
    return f"{100.0 * count / total:.2f}".replace(".", ",") + "%"


def format_clock(moment: datetime) -> str:
    return f"{moment.hour:02d} giờ {moment.minute:02d} phút"


def recorded_line(data: MinutesData) -> str:
    """"Cuộc họp được ghi hình từ 09 giờ 05 phút đến 10 giờ 30 phút." (issue 16); a day other
    than the meeting's start is named, a recording never stopped cleanly says so."""
    def at(moment: datetime) -> str:
        day = "" if moment.date() == data.started_at.date() else \
            f", {format_date_line('', moment.date())[2:]}"
        return format_clock(moment) + day
    spans = [f"từ {at(r.since)} đến {at(r.until)}" if r.until is not None
             else f"từ {at(r.since)} (không ghi nhận thời điểm dừng)" for r in data.recorded]
    return f"Cuộc họp được ghi hình {'; '.join(spans)}."


def vote_option_line(option: VoteOption, eligible: int, unit: str = "đại biểu") -> str:
    return f"{option.label}: {option.count}/{eligible} {unit} ({format_percent(option.count, eligible)})"


def vote_base_line(vote: VoteResult) -> str:
    """The base of a vote as the record states it: total, present, voting, and which of
    them the percentages are of (shared/DOMAIN.md)."""
    method = "bỏ phiếu kín" if vote.method is VoteMethod.SECRET else "biểu quyết công khai"
    if vote.members is None:  # a result recorded without its base's parts
        return f"Hình thức: {method}; số đại biểu có quyền biểu quyết: {vote.eligible}."
    parts = [f"tổng số đại biểu: {vote.members}"]
    if vote.present is not None:
        parts.append(f"có mặt: {vote.present}")
    if vote.cast is not None:
        parts.append(f"tham gia biểu quyết: {vote.cast}")
    of = "tổng số đại biểu" if vote.base_kind is VoteBaseKind.ALL_MEMBERS \
        else "số đại biểu có mặt"
    return (f"Hình thức: {method}; {'; '.join(parts)}. "
            f"Tỷ lệ tính trên {of} ({vote.eligible}).")


def vote_outcome_line(vote: VoteResult) -> str:
    """"Thông qua" / "Không thông qua"; for an election, who was elected."""
    if vote.election:
        if not vote.elected:
            return "Kết quả: không có ứng cử viên nào trúng cử."
        counts = {o.label: o.count for o in vote.options}
        named = "; ".join(f"{name} trúng cử với {counts.get(name, 0)}/{vote.eligible} phiếu "
                          f"({format_percent(counts.get(name, 0), vote.eligible)})"
                          for name in vote.elected)
        return f"Kết quả: {named}."
    if vote.adopted and vote.tie_break:
        return "Kết quả: Thông qua (số phiếu ngang nhau; theo ý kiến Chủ tịch đã biểu quyết)."
    return f"Kết quả: {'Thông qua' if vote.adopted else 'Không thông qua'}."


def closing_line(data: MinutesData) -> str:
    """Decree 30's closing formula: "Cuộc họp kết thúc vào … giờ …, ngày … ./."."""
    if data.ended_at is None:
        return "Biên bản được lập khi cuộc họp đang diễn ra./."
    end = data.ended_at
    when = ("cùng ngày" if end.date() == data.started_at.date()
            else format_date_line("", end.date())[2:])
    return f"Cuộc họp kết thúc vào lúc {format_clock(end)} {when}./."


# --- HTML ----------------------------------------------------------------------


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{escape(text)}</p>"


def _who(person: Attendee | Speaker) -> str:
    return f"{person.name}, {person.position}" if person.position else person.name


def _title(data: MinutesData) -> str:
    return f"<h1>BIÊN BẢN</h1>{_p(data.meeting_title, 'title b')}"


def _section_general(data: MinutesData) -> list[str]:
    start = data.started_at
    out = ["<h2>I. THỜI GIAN, ĐỊA ĐIỂM, THÀNH PHẦN</h2>"]
    until = ""
    if data.ended_at is not None:
        same_day = data.ended_at.date() == start.date()
        until = f"; kết thúc lúc {format_clock(data.ended_at)}" + (
            "" if same_day else f", {format_date_line('', data.ended_at.date())[2:]}")
    out.append(
        _p(
            f"1. Thời gian: bắt đầu lúc {format_clock(start)}, "
            f"{format_date_line('', start.date())[2:]}{until}."
        )
    )
    if data.recorded:
        out.append(_p(recorded_line(data)))
    out.append(_p(f"2. Địa điểm: {data.location}."))
    if data.sites:
        out.append(_p(f"Các điểm cầu: {'; '.join(data.sites)}."))
    out.append(_p("3. Thành phần:"))
    out.append(_p(f"- Chủ trì: {_who(data.chair)}.", "li"))
    out.append(_p(f"- Thư ký: {_who(data.secretary)}.", "li"))
    present = [a for a in data.attendees if a.present]
    absent = [a for a in data.attendees if not a.present]
    if data.attendees:
        out.append(_p(f"- Có mặt: {len(present)}/{len(data.attendees)} đại biểu:", "li"))
        for a in present:
            site = f" (điểm cầu {a.site})" if a.site else ""
            out.append(_p(f"+ {_who(a)}{site};", "li2"))
        out.append(_p(f"- Vắng mặt: {len(absent)} đại biểu{':' if absent else '.'}", "li"))
        for a in absent:
            reason = f"lý do: {a.absence_reason}" if a.absence_reason else "không có lý do"
            out.append(_p(f"+ {_who(a)} ({reason});", "li2"))
    return out


def _section_agenda(data: MinutesData) -> list[str]:
    out = ["<h2>II. NỘI DUNG CUỘC HỌP</h2>"]
    for n, item in enumerate(data.agenda, 1):
        out.append(_p(f"{n}. {item.title}", "b"))
        facts = []
        if item.presenter:
            facts.append(f"Người trình bày: {item.presenter}")
        if item.duration_seconds is not None:
            facts.append(f"thời lượng: {format_duration(item.duration_seconds)}")
        if facts:
            out.append(_p("; ".join(facts) + "."))
        if item.speakers:
            out.append(_p("Ý kiến phát biểu:"))
            out.extend(
                _p(f"- {_who(s)}: {format_duration(s.seconds)};", "li") for s in item.speakers
            )
        if item.summary:
            out.extend(_p(line) for line in item.summary.splitlines() if line.strip())
    return out


def _section_votes(data: MinutesData) -> list[str]:
    if not data.votes:
        return []
    out = ["<h2>III. KẾT QUẢ BIỂU QUYẾT</h2>"]
    for n, vote in enumerate(data.votes, 1):
        out.append(_p(f"{n}. {vote.question}", "b"))
        out.append(_p(vote_base_line(vote)))
        if vote.nodes_note:  # a cascaded meeting: each node's ballots, and any late
            out.append(_p(vote.nodes_note))
        unit = "phiếu" if vote.election else "đại biểu"
        out.extend(_p(f"- {vote_option_line(o, vote.eligible, unit)};", "li")
                   for o in vote.options)
        out.append(_p(vote_outcome_line(vote), "b"))
    return out


def _section_end(data: MinutesData) -> list[str]:
    roman = "IV" if data.votes else "III"
    out = [f"<h2>{roman}. KẾT LUẬN</h2>"]
    out.extend(_p(line) for line in data.conclusions.splitlines() if line.strip())
    if data.closing_note:
        out.append(_p(data.closing_note))
    out.append(_p(closing_line(data)))
    out.append(
        '<table class="sig"><tr>'
        f'<td style="width: 50%"><p class="b">THƯ KÝ</p><p class="i">(Ký, ghi rõ họ tên)</p>'
        f'<p class="b signame">{escape(data.secretary.name)}</p></td>'
        f'<td style="width: 50%"><p class="b">CHỦ TRÌ</p><p class="i">(Ký, ghi rõ họ tên)</p>'
        f'<p class="b signame">{escape(data.chair.name)}</p></td></tr></table>'
    )
    return out


def minutes_html(data: MinutesData) -> str:
    parts = [_title(data), *_section_general(data), *_section_agenda(data)]
    parts += [*_section_votes(data), *_section_end(data)]
    return "\n".join(parts)


# --- layout ----------------------------------------------------------------------

_FACES = {
    FontStyle.REGULAR: ("normal", "normal"),
    FontStyle.BOLD: ("bold", "normal"),
    FontStyle.ITALIC: ("normal", "italic"),
    FontStyle.BOLD_ITALIC: ("bold", "italic"),
}
_FONT_NAMES = {s: f"doc-{s.value}" for s in FontStyle}


def _css() -> str:
    faces = "".join(
        f"@font-face {{font-family: doc; src: url({s.value}.ttf); font-weight: {w}; font-style: {st};}}"
        for s, (w, st) in _FACES.items()
    )
    return (
        faces
        + f"""
    * {{font-family: doc; font-size: {BODY_PT}pt; line-height: 1.25;}}
    p {{margin: 0 0 4pt 0; text-align: justify; text-indent: 1cm;}}
    p.li {{text-indent: 0; margin-left: 1cm;}}
    p.li2 {{text-indent: 0; margin-left: 1.6cm;}}
    .b {{font-weight: bold;}} .i {{font-style: italic;}}
    table {{width: 100%; border-collapse: collapse;}}
    td {{vertical-align: top; padding: 0;}}
    table.sig td p {{text-align: center; text-indent: 0; margin: 0;}}
    h1 {{font-size: 14pt; font-weight: bold; text-align: center; margin: 0;}}
    p.title {{text-align: center; text-indent: 0; font-size: 14pt; margin-bottom: 10pt;}}
    h2 {{font-size: {BODY_PT}pt; font-weight: bold; margin: 8pt 0 4pt 0;}}
    table.sig {{margin-top: 14pt;}}
    table.sig td p.signame {{margin-top: 60pt;}}
    """
    )


# --- header (drawn by hand: exact column widths and rules) ---------------------


@dataclass(frozen=True)
class _Line:
    text: str
    style: FontStyle
    size: float
    rule: float = 0.0  # length of the rule under the line, as a fraction of its width


def _fit(family: FontFamily, style: FontStyle, text: str, width: float, preferred: float) -> float:
    """Largest size <= preferred at which ``text`` fits on one line of ``width``."""
    return min(preferred, 0.98 * width / fonts.get_font(style, family).text_length(text, 1.0))


def _wrap(
    family: FontFamily, text: str, style: FontStyle, size: float, width: float
) -> list[_Line]:
    font, lines, current = fonts.get_font(style, family), [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and font.text_length(trial, size) > width:
            lines.append(_Line(current, style, size))
            trial = word
        current = trial
    return lines + [_Line(current, style, size)] if current else lines


def _columns(
    data: MinutesData, family: FontFamily
) -> tuple[list[_Line], list[_Line], _Line, _Line]:
    """Upper blocks of both header columns, then the 'Số' and date lines."""
    left_w, right_w = BODY.width * LEFT_COL, BODY.width * (1 - LEFT_COL)
    left = _wrap(family, data.issuing_body.upper(), FontStyle.REGULAR, 12.5, left_w)
    unit = _wrap(family, data.unit.upper(), FontStyle.BOLD, 12.5, left_w)
    # Decree 30: a rule 1/3-1/2 as long as the unit name, centred under it.
    left += unit[:-1] + [_Line(unit[-1].text, FontStyle.BOLD, 12.5, rule=0.4)] if unit else []
    right = [
        _Line(MOTTO_1, FontStyle.BOLD, _fit(family, FontStyle.BOLD, MOTTO_1, right_w, 12.5)),
        _Line(
            MOTTO_2, FontStyle.BOLD, _fit(family, FontStyle.BOLD, MOTTO_2, right_w, 13.5), rule=1.0
        ),
    ]
    date_line = format_date_line(data.place_name, data.issued_on)
    number = _Line(
        f"Số: {data.number}",
        FontStyle.REGULAR,
        _fit(family, FontStyle.REGULAR, f"Số: {data.number}", left_w, 13),
    )
    dated = _Line(
        date_line, FontStyle.ITALIC, _fit(family, FontStyle.ITALIC, date_line, right_w, 13.5)
    )
    return left, right, number, dated


def _draw_lines(
    shape: pymupdf.Shape, family: FontFamily, lines: list[_Line], x0: float, width: float, y: float
) -> float:
    """Centre ``lines`` in [x0, x0+width] from top ``y``; returns the bottom."""
    for line in lines:
        w = fonts.get_font(line.style, family).text_length(line.text, line.size)
        y += line.size * 1.2
        shape.insert_text(
            (x0 + (width - w) / 2, y),
            line.text,
            fontname=_FONT_NAMES[line.style],
            fontsize=line.size,
        )
        if line.rule:
            r, mid, ry = w * line.rule, x0 + width / 2, y + line.size * 0.3
            shape.draw_line((mid - r / 2, ry), (mid + r / 2, ry))
            shape.finish(width=0.6, color=(0, 0, 0))
            y += line.size * 0.3
    return y


def _draw_header(page: pymupdf.Page, data: MinutesData, family: FontFamily) -> float:
    """Draw the header on the first page; returns where the body may start."""
    left, right, number, dated = _columns(data, family)
    # Only the styles used: an unused embedded font would not get subset.
    for style in {line.style for line in [*left, *right, number, dated]}:
        page.insert_font(fontname=_FONT_NAMES[style], fontbuffer=family.buffer(style))
    left_w, right_w = BODY.width * LEFT_COL, BODY.width * (1 - LEFT_COL)
    shape = page.new_shape()
    bottom = max(
        _draw_lines(shape, family, left, BODY.x0, left_w, BODY.y0),
        _draw_lines(shape, family, right, BODY.x0 + left_w, right_w, BODY.y0),
    )
    # 'Số' and the place/date line share one baseline, as in the template.
    bottom = max(
        _draw_lines(shape, family, [number], BODY.x0, left_w, bottom + 6),
        _draw_lines(shape, family, [dated], BODY.x0 + left_w, right_w, bottom + 6),
    )
    # overlay=False puts the header first in the content stream, so text
    # extraction and screen readers meet it before the body.
    shape.commit(overlay=False)
    return bottom + 24


def _layout(data: MinutesData, family: FontFamily) -> pymupdf.Document:
    archive = pymupdf.Archive()
    for style in FontStyle:
        archive.add(family.buffer(style), f"{style.value}.ttf")
    story = pymupdf.Story(minutes_html(data), user_css=_css(), archive=archive)
    # Dry run of the header on a scratch page, to know where page 1's body starts.
    body_top = _draw_header(
        pymupdf.open().new_page(width=PAGE.width, height=PAGE.height), data, family
    )
    buf = io.BytesIO()
    writer = pymupdf.DocumentWriter(buf)
    page_no, more = 0, 1
    while more:
        if page_no >= MAX_PAGES:
            raise ValueError(f"minutes exceed {MAX_PAGES} pages")
        device = writer.begin_page(PAGE)
        more, _ = story.place(
            pymupdf.Rect(BODY.x0, body_top, BODY.x1, BODY.y1) if page_no == 0 else BODY
        )
        story.draw(device)
        writer.end_page()
        page_no += 1
    writer.close()
    doc = pymupdf.open("pdf", buf.getvalue())
    _draw_header(doc[0], data, family)
    return doc


def _number_pages(doc: pymupdf.Document, family: FontFamily) -> None:
    """Decree 30: Arabic page numbers, top centre, from the second page."""
    font = fonts.get_font(FontStyle.REGULAR, family)
    for number in range(1, doc.page_count):
        page = doc[number]
        label = str(page.number + 1)
        page.insert_font(fontname=_FONT_NAMES[FontStyle.REGULAR], fontbuffer=font.buffer)
        x = (BODY.x0 + BODY.x1) / 2 - font.text_length(label, 13) / 2
        page.insert_text((x, 12 * MM), label, fontname=_FONT_NAMES[FontStyle.REGULAR], fontsize=13)


def render_minutes(data: MinutesData, *, prefer_serif: bool = True) -> bytes:
    """Typeset ``data`` as a PDF; serif if the machine has a Vietnamese serif."""
    family = fonts.document_family(prefer_serif)
    doc = _layout(data, family)
    try:
        _number_pages(doc, family)
        doc.set_metadata({"title": f"Biên bản - {data.meeting_title}", "producer": "Hopso"})
        doc.subset_fonts()
        return doc.tobytes(garbage=3, deflate=True)
    finally:
        doc.close()
