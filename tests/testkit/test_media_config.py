"""testkit/media_config.py: the tests' own SFUs follow HOPSO_BANDWIDTH_ALLOCATION."""

from __future__ import annotations

import pytest

from media import MediaConfig
from testkit.media_config import bandwidth_allocation


def test_the_variable_turns_the_allocator_on_or_off_and_unset_keeps_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSO_BANDWIDTH_ALLOCATION", "on")
    assert bandwidth_allocation() is True
    monkeypatch.setenv("HOPSO_BANDWIDTH_ALLOCATION", "Off")
    assert bandwidth_allocation() is False
    monkeypatch.delenv("HOPSO_BANDWIDTH_ALLOCATION")
    assert bandwidth_allocation() is MediaConfig(ice_addresses=("127.0.0.1",)
                                                 ).bandwidth_allocation


def test_a_value_that_is_neither_on_nor_off_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSO_BANDWIDTH_ALLOCATION", "maybe")
    with pytest.raises(ValueError, match="on or off"):
        bandwidth_allocation()
