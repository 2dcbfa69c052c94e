"""GET /metrics: Prometheus with the bearer token, or a logged-in administrator; nobody else."""

from pathlib import Path

import aiohttp
import pytest

from server.core.settings import ConfigError, parse_settings
from tests.conftest import Harness, start_harness

TOKEN = "scrape-token-0123456789"


async def scrape(base: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics", headers=headers,
                                                   allow_redirects=False) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_metrics_need_an_administrator_or_the_token(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, None, metrics_token=TOKEN)
    try:
        status, text, headers = await scrape(h.base, {})
        assert status == 401 and '"not_authenticated"' in text
        assert headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
            assert (await scrape(h.base, {"Authorization": wrong}))[0] == 401, wrong
        status, text, headers = await scrape(h.base, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert "hopso_http_requests_total" in text
        delegate, admin = await h.login("daibieu"), await h.login("quantri")
        assert (await delegate.call("GET", "/metrics"))[0] == 403
        status, text = await admin.call("GET", "/metrics")
        assert status == 200 and "hopso_http_requests_total" in text
    finally:
        await h.close()
        await h.server.close()


async def test_without_a_token_only_administrators_read_metrics(hopso_sqlite: Harness) -> None:
    assert (await scrape(hopso_sqlite.base, {"Authorization": "Bearer anything"}))[0] == 401
    assert (await scrape(hopso_sqlite.base, {}))[0] == 401
    status, _ = await (await hopso_sqlite.login("quantri")).call("GET", "/metrics")
    assert status == 200


@pytest.mark.parametrize("token", ["short", "x" * 15, "has space in it 123", "ünïcode-token-1234"])
def test_a_weak_metrics_token_stops_start_up(token: str) -> None:
    with pytest.raises(ConfigError, match="metrics-token"):
        parse_settings(["--metrics-token", token], {})
    assert parse_settings([], {"HOPSO_METRICS_TOKEN": TOKEN}).metrics_token == TOKEN
