"""tests/scheduling.py: how scripts/test.sh's two workers share the suite, driven as xdist's
controller drives it (nodes register their collection, each finished test is reported)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.conftest import xdist_group
from tests.scheduling import GroupScheduling

ONE_AT_A_TIME = [f"tests/server/test_sigkill_durability.py::test_{n}" for n in range(3)]
BROWSERS = [f"tests/e2e/test_login_browser.py::test_{n}" for n in range(4)]
# More tests than either group: xdist's largest-first order would send it out before them.
BIG = [f"tests/documents/test_sanitize.py::test_{n}" for n in range(6)]
SMALL = [f"tests/media/test_link_layers.py::test_{n}" for n in range(3)]
COLLECTION = [*BIG, *BROWSERS, *SMALL, *ONE_AT_A_TIME]


class Node:
    """A worker: what it was sent, in order, and what it has not run yet."""

    def __init__(self, name: str) -> None:
        self.name, self.shutting_down = name, False
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[str] = []
        self.queue: list[int] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.queue += indexes
        self.sent += [COLLECTION[i] for i in indexes]

    def shutdown(self) -> None:
        self.shutting_down = True


def run() -> tuple[Node, Node]:
    config: Any = SimpleNamespace(getvalue=lambda name: ["2*popen"],
                                  option=SimpleNamespace(loadscopereorder=True))
    sched = GroupScheduling(config, None, xdist_group)
    nodes = Node("gw0"), Node("gw1")
    for node in nodes:
        sched.add_node(node)  # type: ignore[arg-type]
        sched.add_node_collection(node, COLLECTION)  # type: ignore[arg-type]
    sched.schedule()
    while any(node.queue for node in nodes):  # the workers take turns finishing a test
        for node in nodes:
            if node.queue:
                sched.mark_test_complete(node, node.queue.pop(0))  # type: ignore[arg-type]
    return nodes


def test_the_two_groups_start_side_by_side_even_beside_a_larger_module() -> None:
    first, second = run()
    assert {first.sent[0], second.sent[0]} == {ONE_AT_A_TIME[0], BROWSERS[0]}
    for group in (ONE_AT_A_TIME, BROWSERS):
        (holder,) = [node for node in (first, second) if group[0] in node.sent]
        assert set(group) <= set(holder.sent), group  # one worker, one after another


def test_each_module_runs_whole_on_one_worker_once() -> None:
    first, second = run()
    assert sorted(first.sent + second.sent) == sorted(COLLECTION)
    for module in (BIG, SMALL):
        assert set(module) <= set(first.sent) or set(module) <= set(second.sent), module
