"""The minutes say when the meeting was recorded (issue 16): "Cuộc họp được ghi hình từ … đến
…", a day other than the meeting's start named, a recording never stopped said so; none, no
line."""

from __future__ import annotations

from datetime import datetime

import pymupdf

from documents.minutes import render_minutes
from rooms.minutes_data import RecordedSpan
from tests.documents.test_minutes import all_text, minutes


def text_of(recorded: list[RecordedSpan]) -> str:
    data = minutes(n_agenda=1, n_attendees=1)
    data.recorded = recorded
    with pymupdf.open(stream=render_minutes(data), filetype="pdf") as doc:
        return " ".join(all_text(doc).split())


def test_the_minutes_state_each_recording_from_and_to() -> None:
    text = text_of([RecordedSpan(datetime(2026, 11, 27, 8, 5), datetime(2026, 11, 27, 9, 40)),
                    RecordedSpan(datetime(2026, 11, 27, 10, 0), datetime(2026, 11, 28, 0, 15)),
                    RecordedSpan(datetime(2026, 11, 27, 10, 20))])
    assert ("Cuộc họp được ghi hình từ 08 giờ 05 phút đến 09 giờ 40 phút; từ 10 giờ 00 phút "
            "đến 00 giờ 15 phút, ngày 28 tháng 11 năm 2026; từ 10 giờ 20 phút (không ghi nhận "
            "thời điểm dừng).") in text


def test_no_recording_no_line() -> None:
    assert "ghi hình" not in text_of([])
