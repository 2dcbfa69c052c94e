"""Vietnamese first, English second: gettext catalogs (.po) read with Babel at start-up."""

from __future__ import annotations

import functools
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from server.core import keys

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANG_COOKIE = "hopso_lang"
LOCALE_DIR = Path(__file__).resolve().parents[2] / "web_client" / "locale"
LANG = web.RequestKey("lang", str)


@functools.cache
def _compiled(po: Path, lang: str) -> tuple[Translations, dict[str, str]]:
    """Once a process (read-only): a process making many apps, as the tests do, parsed the
    same catalogs each time (~20 ms of CPU an app)."""
    with open(po, "rb") as f:
        catalog = read_po(f, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer), {m.id: m.string for m in catalog
                                  if isinstance(m.id, str) and isinstance(m.string, str)
                                  and m.id and m.string}


class Translator:
    """Compiled catalogs per language, kept in memory (no .mo build step)."""

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self.catalogs: dict[str, dict[str, str]] = {}
        self.translations: dict[str, Translations] = {}
        for lang in LANGUAGES:
            self.translations[lang], self.catalogs[lang] = _compiled(
                locale_dir / lang / "LC_MESSAGES" / "messages.po", lang)

    def gettext(self, lang: str) -> Callable[[str], str]:
        return self.translations.get(lang, self.translations[DEFAULT_LANGUAGE]).gettext


def pick_language(request: web.Request) -> str:
    asked = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    return asked if asked in LANGUAGES else DEFAULT_LANGUAGE


@web.middleware
async def language_middleware(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                              ) -> web.StreamResponse:
    request[LANG] = pick_language(request)
    response = await handler(request)
    if request.query.get("lang") in LANGUAGES and not response.prepared:
        response.set_cookie(LANG_COOKIE, request[LANG], max_age=365 * 86400, samesite="Lax",
                            path="/")
    return response


async def catalog_handler(request: web.Request) -> web.Response:
    """The JS strings: {msgid: translation} for one language."""
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        raise web.HTTPNotFound(text=f"unknown language {lang!r}")
    return web.json_response(request.app[keys.TRANSLATOR].catalogs[lang],
                             headers={"Cache-Control": "no-cache"})
