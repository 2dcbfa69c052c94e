"""testkit/encoded_cache.py: an encoding is made once, whoever asks again reads it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from testkit import encoded_cache
from testkit.encoded_cache import cached

calls: list[tuple[float, str]] = []


def encode(seconds: float, label: str = "x") -> dict[str, object]:
    calls.append((seconds, label))
    time.sleep(0.2)  # long enough for a second asker to arrive meanwhile
    return {"seconds": seconds, "label": label, "frames": [bytes([n]) * 10 for n in range(5)]}


@pytest.fixture(autouse=True)
def own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoded_cache, "cache_dir", lambda: tmp_path / "cache")
    calls.clear()


def test_a_second_ask_reads_the_first_encoding() -> None:
    first = cached(encode, 2.0, label="a")
    assert cached(encode, 2.0, label="a") == first
    assert calls == [(2.0, "a")]


def test_other_arguments_are_another_encoding() -> None:
    cached(encode, 2.0)
    cached(encode, 1.0)
    cached(encode, 1.0, label="b")
    assert calls == [(2.0, "x"), (1.0, "x"), (1.0, "b")]


def test_two_askers_at_once_encode_once() -> None:
    results: list[object] = []
    askers = [threading.Thread(target=lambda: results.append(cached(encode, 3.0)))
              for _ in range(2)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert calls == [(3.0, "x")] and results[0] == results[1]


def test_a_changed_encoder_is_not_read_from_the_old_file(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    cached(encode, 2.0)
    real = encoded_cache.inspect.getsource
    monkeypatch.setattr(encoded_cache.inspect, "getsource",
                        lambda obj: real(obj) + "\n# edited")
    cached(encode, 2.0)
    assert calls == [(2.0, "x"), (2.0, "x")]


def test_an_edited_testkit_module_the_encoder_uses_is_a_new_encoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As encode_simulcast draws its frames with testkit/aiortc_clients.py's: this module
    uses testkit.encoded_cache (cached), whose edit must count too."""
    cached(encode, 2.0)
    real = encoded_cache.inspect.getsource
    monkeypatch.setattr(encoded_cache.inspect, "getsource", lambda obj: real(obj) + (
        "\n# edited" if getattr(obj, "__name__", "") == "testkit.encoded_cache" else ""))
    cached(encode, 2.0)
    assert calls == [(2.0, "x"), (2.0, "x")]
