"""Features: what each server package adds to the app, and what it needs from the others.

A feature's setup registers its routes and socket events and sets the app keys it
provides; it may read any key it needs. install() checks the whole list before any setup
runs, so a feature listed before the one it depends on is a start-up error naming both,
not a KeyError at the first request (docs/architecture.md (Server features)).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.core.realtime import Realtime


class FeatureError(Exception):
    """The feature list cannot be installed: a need nobody provides earlier, a key provided
    twice, or a setup that did not set what its feature said it provides."""


@dataclass(frozen=True)
class Feature:
    name: str
    setup: Callable[[web.Application, Realtime], None]
    needs: tuple[web.AppKey[Any], ...] = ()
    provides: tuple[web.AppKey[Any], ...] = ()
    # Opened in list order at start-up and closed in reverse order (aiohttp's cleanup_ctx).
    lifespan: Callable[[web.Application], AsyncIterator[None]] | None = None


def install(app: web.Application, realtime: Realtime, features: Sequence[Feature]) -> None:
    check(app, features)
    for feature in features:
        feature.setup(app, realtime)
        missing = [key for key in feature.provides if key not in app]
        if missing:
            raise FeatureError(f"{feature.name} says it provides {_names(missing)}, "
                               "but its setup did not set it")
        if feature.lifespan is not None:
            app.cleanup_ctx.append(feature.lifespan)


def check(app: web.Application, features: Sequence[Feature]) -> None:
    """Every need is already in the app (core's keys) or provided by an earlier feature, and
    no key is provided twice."""
    available: dict[web.AppKey[Any], str] = {key: "core" for key in app if
                                             isinstance(key, web.AppKey)}
    for feature in features:
        for need in feature.needs:
            if need not in available:
                later = [f.name for f in features if need in f.provides]
                hint = f" ({later[0]} does, listed after it)" if later else ""
                raise FeatureError(f"{feature.name} needs {key_name(need)}, "
                                   f"which no earlier feature provides{hint}")
        for key in feature.provides:
            if key in available:
                raise FeatureError(f"{feature.name} provides {key_name(key)}, "
                                   f"already provided by {available[key]}")
            available[key] = feature.name


def key_name(key: web.AppKey[Any]) -> str:
    """"documents.runtime" for the key named "runtime" in server/documents/keys.py. aiohttp
    prefixes a key's name with the module that created it (its only spelling of the name)."""
    name: str = key._name
    return name.removeprefix("server.").replace(".keys.", ".")


def _names(keys: Sequence[web.AppKey[Any]]) -> str:
    return ", ".join(key_name(key) for key in keys)
