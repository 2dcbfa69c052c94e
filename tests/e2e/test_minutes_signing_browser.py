"""Signed minutes in Chromium: the secretary drafts and the chair approves; each signs with
the demo's PKCS#12 certificate file (TEST CA, made at the demo's first start); the chair's
screen shows who signed, when, and that the file is intact; after a byte of the stored file
is changed, it shows "not intact". A downloaded copy checks as intact and audited; a changed
copy does not."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess, start_server
from tests.e2e.test_procedure_browser import log_in

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.browser
DESK: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    data = tmp_path_factory.mktemp("e2e-signing")
    server = start_server("--demo", "--data-dir", str(data), env={"HOPSO_FAST_HASH": "1"},
                          preimported=True)
    yield server, data
    server.stop()


def demo_keys(data: Path) -> dict[str, tuple[Path, str]]:
    """Signer name → (PKCS#12 file, password), as the demo wrote them."""
    out = {}
    for line in (data / "signing-demo" / "passwords.txt").read_text("utf-8").splitlines():
        name, password, who = line.split("\t")
        out[who] = (data / "signing-demo" / name, password)
    return out


def sign(page: object, key: tuple[Path, str]) -> None:
    page.set_input_files("#minutes-key-file", str(key[0]))  # type: ignore[attr-defined]
    page.fill("#minutes-key-secret", key[1])  # type: ignore[attr-defined]
    page.click("#minutes-sign")  # type: ignore[attr-defined]


@pytest.mark.timeout(180)
def test_the_chair_sees_who_signed_when_and_whether_the_file_is_intact(
        demo: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    server, data = demo
    keys = demo_keys(data)
    with chromium() as browser:
        chair = log_in(browser, server, "chutri", "/meetings", DESK)
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(server.base)
        secretary = log_in(browser, server, "thuky", path, DESK)

        secretary.click("#proc-generate-minutes")
        secretary.click("#minutes-submit")
        chair.wait_for_selector("#minutes-stage[data-stage=draft]")
        chair.click("#minutes-approve")
        secretary.wait_for_selector("#minutes-stage[data-stage=reviewed]")
        secretary.fill("#minutes-key-secret", "wrong")  # a refused key says why, keeps the form
        secretary.set_input_files("#minutes-key-file", str(keys["Thư ký (demo)"][0]))
        secretary.click("#minutes-sign")
        secretary.wait_for_selector("#minutes-review-message:has-text('Sai mật khẩu')")
        sign(secretary, keys["Thư ký (demo)"])
        chair.wait_for_selector("#minutes-stage[data-stage=signing]")
        sign(chair, keys["Chủ trì (demo)"])

        chair.wait_for_selector("#minutes-stage[data-stage=signed]")
        intact = chair.locator("#minutes-integrity")
        assert intact.get_attribute("data-intact") == "true"
        assert "còn nguyên vẹn" in intact.inner_text()
        for role, who in (("secretary", "Thư ký (demo)"), ("chair", "Chủ trì (demo)")):
            row = chair.locator(f"#minutes-signatures li[data-role={role}]")
            assert row.get_attribute("data-intact") == "true"
            assert who in row.inner_text() and "nguyên vẹn" in row.inner_text()
            assert row.locator("time").get_attribute("datetime")
        secretary.wait_for_selector("#minutes-integrity[data-intact=true]")

        # A member checks the file they downloaded: intact and in the meeting's audit log.
        with chair.expect_download() as download:
            chair.click("#minutes-signed-pdf")
        signed = tmp_path / "signed.pdf"
        download.value.save_as(signed)
        chair.set_input_files("#signed-check-file", str(signed))
        chair.click("#signed-check")
        chair.wait_for_selector("#signed-check-verdict[data-intact=true]")
        assert "Đã được ghi" in chair.locator("#signed-check-audited").inner_text()
        altered = tmp_path / "altered.pdf"
        copy = bytearray(signed.read_bytes())
        copy[len(copy) // 3] ^= 0x01
        altered.write_bytes(bytes(copy))
        chair.set_input_files("#signed-check-file", str(altered))
        chair.click("#signed-check")
        chair.wait_for_selector("#signed-check-verdict[data-intact=false]")
        assert "Không được ghi" in chair.locator("#signed-check-audited").inner_text()

        # One byte of the stored signed file changes: the chair's screen says so on reload.
        with sqlite3.connect(data / "hopso.sqlite3") as db:
            rowid, pdf = db.execute("SELECT id, pdf FROM minutessignature "
                                    "WHERE role = 'chair'").fetchone()
            changed = bytearray(pdf)
            changed[len(pdf) // 3] ^= 0x01
            db.execute("UPDATE minutessignature SET pdf = ? WHERE id = ?", (bytes(changed), rowid))
        chair.reload()
        chair.wait_for_selector("#minutes-integrity[data-intact=false]")
        assert "KHÔNG còn nguyên vẹn" in chair.locator("#minutes-integrity").inner_text()
        assert chair.locator("#minutes-signatures li[data-intact=true]").count() == 0
        assert not chair.errors and not secretary.errors, (chair.errors, secretary.errors)
