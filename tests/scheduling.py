"""How scripts/test.sh's two pytest-xdist workers share the suite (tests/conftest.py returns
this scheduler from pytest_xdist_make_scheduler).

xdist's own `--dist loadgroup` groups nothing on pytest 9: it marks a group by renaming
`item._nodeid`, which pytest 9 no longer reads, so every test was scheduled on its own and
the tests that must not overlap (Redis's shared channels, whole servers and browsers with
time bounds) ran beside each other. Here the groups are decided on the controller, from the
test ids alone, whatever xdist does with markers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdist.scheduler import LoadScopeScheduling


class GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling, with a scope per group (`group_of` gives a name) and one per
    test otherwise. Scopes go out largest first (xdist's default order), so the one-at-a-time
    group starts at once on one worker while the other takes everything else."""

    def __init__(self, config: Any, log: Any, group_of: Callable[[str], str | None]) -> None:
        super().__init__(config, log)
        self.group_of = group_of

    def _split_scope(self, nodeid: str) -> str:
        return self.group_of(nodeid) or nodeid
