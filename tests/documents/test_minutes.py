"""Minutes PDF: Decree 30 header, Vietnamese text extracts exactly, multi-page."""

from __future__ import annotations

from datetime import date, datetime

import pymupdf
import pytest

from documents import fonts
from documents.minutes import format_date_line, format_duration, render_minutes
from rooms.minutes_data import (
    AgendaEntry,
    Attendee,
    MinutesData,
    Speaker,
    VoteMethod,
    VoteOption,
    VoteResult,
)


def minutes(n_agenda: int = 2, n_attendees: int = 6) -> MinutesData:
    attendees = [Attendee(f"Nguyễn Văn Hùng {i}", "Trưởng phòng") for i in range(n_attendees)]
    attendees.append(
        Attendee("Trần Thị Hồng", "Chuyên viên", present=False, absence_reason="đi công tác")
    )
    agenda = [
        AgendaEntry(
            f"Báo cáo tình hình kinh tế - xã hội, mục {i + 1}",
            presenter="Lê Văn Dũng",
            duration_seconds=905,
            speakers=[
                Speaker("Phạm Thị Ngọc", 200, "Trưởng phòng Tài chính"),
                Speaker("Hoàng Văn Sơn", 95),
            ],
            summary="Các đại biểu thống nhất với nội dung báo cáo.\nĐề nghị bổ sung số liệu thu ngân sách.",
        )
        for i in range(n_agenda)
    ]
    votes = [
        VoteResult(
            "Thông qua phương án xây dựng trường mầm non",
            VoteMethod.OPEN,
            [
                VoteOption("Tán thành", 15),
                VoteOption("Không tán thành", 3),
                VoteOption("Không biểu quyết", 2),
            ],
            eligible=20,
            adopted=True,
            members=20,
            present=18,
            cast=18,
        ),
        VoteResult(
            "Bầu Phó Chủ tịch",
            VoteMethod.SECRET,
            [VoteOption("Nguyễn Văn A", 11), VoteOption("Lê Thị B", 7)],
            20,
            True,
            election=True,
            elected=["Nguyễn Văn A"],
        ),
        VoteResult(
            "Nhân sự",
            VoteMethod.SECRET,
            [VoteOption("Đồng ý", 8), VoteOption("Không đồng ý", 12)],
            20,
            False,
        ),
    ]
    return MinutesData(
        issuing_body="UBND thành phố Đồng Hới",
        unit="Văn phòng HĐND và UBND",
        number="15/BB-VP",
        place_name="Đồng Hới",
        issued_on=date(2026, 11, 27),
        meeting_title="Họp giao ban tháng 11 năm 2026",
        started_at=datetime(2026, 11, 27, 8, 0),
        ended_at=datetime(2026, 11, 27, 10, 30),
        location="Phòng họp số 1",
        sites=["Phường Đồng Phú", "Phường Hải Thành"],
        chair=Attendee("Nguyễn Văn Ánh", "Chủ tịch UBND thành phố"),
        secretary=Attendee("Đặng Thị Lan", "Chuyên viên"),
        attendees=attendees,
        agenda=agenda,
        votes=votes,
        conclusions="Ý kiến: đồng ý với phương án.\nGiao Phòng Tài chính - Kế hoạch tham mưu triển khai.",
    )


@pytest.fixture(scope="module")
def short_pdf() -> pymupdf.Document:
    return pymupdf.open("pdf", render_minutes(minutes()))


def all_text(doc: pymupdf.Document) -> str:
    return "\n".join(page.get_text() for page in doc)


@pytest.mark.parametrize(
    "expected",
    [
        "UBND THÀNH PHỐ ĐỒNG HỚI",
        "VĂN PHÒNG HĐND VÀ UBND",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "Số: 15/BB-VP",
        "Đồng Hới, ngày 27 tháng 11 năm 2026",
        "BIÊN BẢN",
        "Họp giao ban tháng 11 năm 2026",
        "- Tán thành: 15/20 đại biểu (75,00%);",
        "Kết quả: Thông qua.",
        "Kết quả: Không thông qua.",
        "Hình thức: bỏ phiếu kín; số đại biểu có quyền biểu quyết: 20.",
        "+ Trần Thị Hồng, Chuyên viên (lý do: đi công tác);",
        "- Phạm Thị Ngọc, Trưởng phòng Tài chính: 3 phút 20 giây;",
        "Ý kiến: đồng ý với phương án.",
        "Cuộc họp kết thúc vào lúc 10 giờ 30 phút cùng ngày./.",
        "- Nguyễn Văn A: 11/20 phiếu (55,00%);",
        "THƯ KÝ",
        "CHỦ TRÌ",
    ],
)
def test_key_strings_extract_exactly(short_pdf: pymupdf.Document, expected: str) -> None:
    assert expected in all_text(short_pdf).splitlines()


@pytest.mark.parametrize(
    "expected",
    [
        "1. Thời gian: bắt đầu lúc 08 giờ 00 phút, ngày 27 tháng 11 năm 2026; kết thúc lúc 10 "
        "giờ 30 phút.",
        "Hình thức: biểu quyết công khai; tổng số đại biểu: 20; có mặt: 18; tham gia biểu "
        "quyết: 18. Tỷ lệ tính trên tổng số đại biểu (20).",
        "Kết quả: Nguyễn Văn A trúng cử với 11/20 phiếu (55,00%).",
    ],
)
def test_start_end_base_and_election_wrapped(short_pdf: pymupdf.Document, expected: str) -> None:
    """Issue 14: start and end times, each vote's base (total, present, voting), and an
    election's outcome naming the elected; these lines wrap, so compare without breaks."""
    assert expected in " ".join(all_text(short_pdf).split())


def test_header_layout(short_pdf: pymupdf.Document) -> None:
    page = short_pdf[0]
    motto = page.search_for("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")[0]
    body = page.search_for("UBND THÀNH PHỐ ĐỒNG HỚI")[0]
    title = page.search_for("BIÊN BẢN")[0]
    assert motto.x0 > body.x1 - 5 and abs(motto.y0 - body.y0) < 5  # side by side at the top
    assert title.y0 > motto.y1 + 30  # title below the header block
    # Rules: one as long as the second motto line, a short one under the unit.
    line2 = page.search_for("Độc lập - Tự do - Hạnh phúc")[0]
    rules = [
        d["rect"] for d in page.get_drawings() if d["rect"].height < 1.5 and d["rect"].width > 20
    ]
    assert any(abs(r.width - line2.width) < 3 and 0 < r.y0 - line2.y1 < 8 for r in rules)
    unit = page.search_for("VĂN PHÒNG HĐND VÀ UBND")[0]
    assert any(r.width < unit.width * 0.6 and 0 < r.y0 - unit.y1 < 8 for r in rules)


def test_fonts_embedded_and_subset(short_pdf: pymupdf.Document) -> None:
    names = {f[3] for page in short_pdf for f in page.get_fonts()}
    assert names and all("+" in n for n in names)  # subset prefix ABCDEF+
    if fonts.document_family().name == "Noto Serif":  # the serif found on Debian machines
        assert all("Noto Serif" in n for n in names)


def test_long_minutes_span_pages_with_page_numbers() -> None:
    doc = pymupdf.open("pdf", render_minutes(minutes(n_agenda=25, n_attendees=40)))
    assert doc.page_count >= 2
    assert "2" in doc[1].get_text(clip=pymupdf.Rect(0, 0, doc[1].rect.width, 45)).split()
    assert "CHỦ TRÌ" in doc[-1].get_text() and "CHỦ TRÌ" not in doc[0].get_text()
    assert "Báo cáo tình hình kinh tế - xã hội, mục 25" in all_text(doc)


def test_sans_fallback_renders_too() -> None:
    doc = pymupdf.open("pdf", render_minutes(minutes(), prefer_serif=False))
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in doc[0].get_text()
    assert all("Noto Sans" in f[3] for f in doc[0].get_fonts())


def test_formatters_and_validation() -> None:
    assert format_date_line("Đồng Hới", date(2026, 2, 5)) == "Đồng Hới, ngày 05 tháng 02 năm 2026"
    assert format_date_line("Huế", date(2026, 3, 15)) == "Huế, ngày 15 tháng 3 năm 2026"
    assert format_duration(3725) == "1 giờ 2 phút 5 giây"
    assert format_duration(0) == "0 giây"
    with pytest.raises(ValueError):
        VoteResult("x", VoteMethod.OPEN, [VoteOption("Tán thành", 21)], eligible=20, adopted=True)
