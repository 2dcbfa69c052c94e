"""Stable rejection/warning codes with bilingual (English, Vietnamese) messages.

Codes are part of the API: the UI and logs key on them, so never rename one.
Messages are templates filled with ``str.format`` keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class RejectCode(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_PDF = "not_pdf"
    ENCRYPTED = "encrypted"
    TOO_MANY_PAGES = "too_many_pages"
    DAMAGED = "damaged"
    TIMEOUT = "timeout"
    TOO_COMPLEX = "too_complex"
    CONVERSION_UNAVAILABLE = "conversion_unavailable"
    CONVERSION_FAILED = "conversion_failed"
    INTERNAL = "internal_error"


class WarningCode(StrEnum):
    REPAIRED = "repaired"
    PAGE_FAILED = "page_failed"
    PAGE_TIMEOUT = "page_timeout"
    PAGE_DOWNSCALED = "page_downscaled"
    PAGE_OVERSIZED = "page_oversized"
    PAGE_RESHAPED = "page_reshaped"
    TEXT_UNAVAILABLE = "text_unavailable"
    ACTIVE_CONTENT_REMOVED = "active_content_removed"
    SANITIZE_FAILED = "sanitize_failed"


# code -> (English, Vietnamese)
MESSAGES: dict[str, tuple[str, str]] = {
    RejectCode.EMPTY: ("The file is empty.", "Tệp rỗng."),
    RejectCode.TOO_LARGE: (
        "The file is too large (maximum {limit_mb} MB).",
        "Tệp quá lớn (tối đa {limit_mb} MB).",
    ),
    RejectCode.NOT_PDF: (
        "The file is not a PDF document.",
        "Tệp không phải là tài liệu PDF.",
    ),
    RejectCode.ENCRYPTED: (
        "The PDF is password-protected. Please remove the password and upload it again.",
        "Tệp PDF được bảo vệ bằng mật khẩu. Vui lòng gỡ mật khẩu rồi tải lên lại.",
    ),
    RejectCode.TOO_MANY_PAGES: (
        "The document has {pages} pages; the maximum is {limit}.",
        "Tài liệu có {pages} trang; tối đa cho phép là {limit} trang.",
    ),
    RejectCode.DAMAGED: (
        "The PDF file is damaged and cannot be read.",
        "Tệp PDF bị hỏng và không thể đọc được.",
    ),
    RejectCode.TIMEOUT: (
        "Processing the document took too long.",
        "Xử lý tài liệu mất quá nhiều thời gian.",
    ),
    RejectCode.TOO_COMPLEX: (
        "The document is too complex to display ({failed} pages could not be rendered).",
        "Tài liệu quá phức tạp để hiển thị ({failed} trang không hiển thị được).",
    ),
    RejectCode.CONVERSION_UNAVAILABLE: (
        (
            "This is an Office document and conversion to PDF is not available on this "
            "server. Please upload a PDF."
        ),
        (
            "Đây là tài liệu Office và máy chủ không hỗ trợ chuyển đổi sang PDF. "
            "Vui lòng tải lên tệp PDF."
        ),
    ),
    RejectCode.CONVERSION_FAILED: (
        "The Office document could not be converted to PDF.",
        "Không chuyển đổi được tài liệu Office sang PDF.",
    ),
    RejectCode.INTERNAL: (
        "An internal error occurred while processing the document.",
        "Đã xảy ra lỗi nội bộ khi xử lý tài liệu.",
    ),
    WarningCode.REPAIRED: (
        "The file was damaged and has been repaired; some content may be missing.",
        "Tệp bị hỏng và đã được sửa; một số nội dung có thể bị thiếu.",
    ),
    WarningCode.PAGE_FAILED: (
        "Page {page} could not be displayed.",
        "Không hiển thị được trang {page}.",
    ),
    WarningCode.PAGE_TIMEOUT: (
        "Page {page} took too long to display and was skipped.",
        "Trang {page} mất quá nhiều thời gian để hiển thị nên đã bị bỏ qua.",
    ),
    WarningCode.PAGE_DOWNSCALED: (
        "Page {page} is very large and is shown at reduced resolution.",
        "Trang {page} quá lớn nên được hiển thị với độ phân giải thấp hơn.",
    ),
    WarningCode.PAGE_OVERSIZED: (
        "Page {page} has an unusual size ({width_mm} × {height_mm} mm).",
        "Trang {page} có kích thước bất thường ({width_mm} × {height_mm} mm).",
    ),
    WarningCode.PAGE_RESHAPED: (
        "Page {page} is extremely narrow or long ({width_mm} × {height_mm} mm) and is shown "
        "stretched to fit.",
        "Trang {page} quá hẹp hoặc quá dài ({width_mm} × {height_mm} mm) nên được hiển thị "
        "kéo giãn cho vừa.",
    ),
    WarningCode.TEXT_UNAVAILABLE: (
        "Search text could not be extracted from pages {pages}.",
        "Không trích xuất được nội dung để tìm kiếm từ các trang {pages}.",
    ),
    WarningCode.ACTIVE_CONTENT_REMOVED: (
        (
            "Scripts, attachments or automatic actions were removed from the copy for "
            "distribution ({items})."
        ),
        "Đã gỡ bỏ mã script, tệp đính kèm hoặc hành động tự động khỏi bản phân phối ({items}).",
    ),
    WarningCode.SANITIZE_FAILED: (
        "A safe copy for download could not be created; the document can only be viewed.",
        "Không tạo được bản sao an toàn để tải xuống; tài liệu chỉ xem được trực tuyến.",
    ),
}


def messages_for(code: str, **params: object) -> tuple[str, str]:
    """Return (english, vietnamese) for ``code``; unknown params are left as-is."""
    en, vi = MESSAGES[code]
    return _fill(en, params), _fill(vi, params)


def _fill(template: str, params: dict[str, object]) -> str:
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template  # a missing parameter must never turn a message into a crash


class DocumentRejected(Exception):
    """The upload cannot be used. ``code`` is stable; messages are for people."""

    def __init__(self, code: RejectCode | str, detail: str = "", **params: object) -> None:
        self.code = RejectCode(code)
        self.detail = detail  # technical detail for logs, never shown to delegates
        self.params = params
        self.message_en, self.message_vi = messages_for(self.code, **params)
        super().__init__(f"{self.code}: {self.message_en}" + (f" ({detail})" if detail else ""))

    def __reduce__(self) -> tuple[object, ...]:
        # Raised inside worker processes, so it must survive pickling.
        return (_rebuild_rejected, (str(self.code), self.detail, self.params))


def _rebuild_rejected(code: str, detail: str, params: dict[str, object]) -> DocumentRejected:
    return DocumentRejected(code, detail, **params)


@dataclass(frozen=True)
class DocumentWarning:
    """A non-fatal problem; ``page_index`` is 0-based (None = whole document)."""

    code: WarningCode
    message_en: str
    message_vi: str
    page_index: int | None = None
    detail: str = ""
    params: dict[str, object] = field(default_factory=dict, compare=False)

    @classmethod
    def make(
        cls, code: WarningCode, page_index: int | None = None, detail: str = "", **params: object
    ) -> DocumentWarning:
        if page_index is not None:
            params.setdefault("page", page_index + 1)  # people count pages from 1
        en, vi = messages_for(code, **params)
        return cls(code, en, vi, page_index, detail, params)
