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
    test module otherwise. The groups go out first, one to each worker (the one-at-a-time
    group and the browsers start at once, side by side), then the modules largest first
    (xdist's default order), each to the first worker with at most 2 tests left.

    A module is one unit, not each test (as until 2026-12-07), so its module-scoped fixtures
    (a server, a probe, a backup: 4-7 s each on a loaded box) are made once, not once on each
    worker that took one of its tests."""

    def __init__(self, config: Any, log: Any, group_of: Callable[[str], str | None]) -> None:
        super().__init__(config, log)
        self.group_of = group_of
        self.groups: set[str] = set()

    def _split_scope(self, nodeid: str) -> str:
        group = self.group_of(nodeid)
        if group is not None:
            self.groups.add(group)
            return group
        return nodeid.split("::", 1)[0]

    def _assign_work_unit(self, node: Any) -> None:
        # A module with more tests than a group (tests/documents/test_sanitize.py: 156) would
        # otherwise go out before it, and both groups could land on one worker.
        for scope in reversed([s for s in self.workqueue if s in self.groups]):
            self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)
