import gc
import weakref

from server.core.heap import SAFETY_NET_GEN2_THRESHOLD, FullCollections
from tests.conftest import Harness


class Clocks:
    def __init__(self) -> None:
        self.wall, self.cpu = 1000.0, 50.0

    def advance(self, seconds: float, busy: float) -> None:
        self.wall += seconds
        self.cpu += seconds * busy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_full_collections_wait_for_a_quiet_moment_but_not_forever() -> None:
    clocks = Clocks()
    full = FullCollections(min_interval_s=30, max_interval_s=300,
                           clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)
    clocks.advance(10, busy=0.0)
    assert not full.tick()  # quiet, but a full collection ran (start-up) 10 s ago
    for _ in range(280):  # a long busy stretch: a vote, the pen strokes of a whole room
        clocks.advance(1, busy=0.9)
        assert not full.tick()
    clocks.advance(11, busy=0.9)
    assert full.tick()  # max_interval_s bounds what a cycle leak could hold
    clocks.advance(31, busy=0.9)
    assert not full.tick()
    clocks.advance(1, busy=0.05)
    assert not full.tick()  # one quiet second after a busy stretch: a vote may go on
    clocks.advance(1, busy=0.05)
    assert full.tick()  # quiet for quiet_s, and min_interval_s since the last
    clocks.advance(1, busy=0.0)
    assert not full.tick()
    for _ in range(40):  # ballots at 30 % of a core are not quiet
        clocks.advance(1, busy=0.3)
        assert not full.tick()


def test_a_quiet_collection_frees_a_cycle_that_young_collections_cannot() -> None:
    clocks = Clocks()
    full = FullCollections(min_interval_s=30, clock=lambda: clocks.wall,
                           cpu_clock=lambda: clocks.cpu)
    holder = [Node()]
    node = holder[0]
    node.other = Node()
    node.other.other = node
    gone = weakref.ref(node)
    del node
    gc.collect(1)  # survived young collections: now in the oldest generation
    holder.clear()  # garbage now, but only a full collection can see it
    gc.collect(1)
    assert gone() is not None
    clocks.advance(31, busy=0.0)
    assert full.tick()
    assert gone() is None


async def test_the_server_freezes_start_up_and_leaves_full_collections_to_the_scheduler(
        hopso_sqlite: Harness) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[2] == SAFETY_NET_GEN2_THRESHOLD


def test_survivors_are_frozen_and_a_thaw_frees_cycles_among_them() -> None:
    clocks = Clocks()
    full = FullCollections(min_interval_s=30, thaw_interval_s=600, clock=lambda: clocks.wall,
                           cpu_clock=lambda: clocks.cpu)
    holder = [Node()]
    holder[0].other = Node()
    holder[0].other.other = holder[0]
    gone = weakref.ref(holder[0])
    clocks.advance(31, busy=0.0)
    frozen = gc.get_freeze_count()
    assert full.tick()
    assert gc.get_freeze_count() > frozen  # the cycle, still in use, was frozen with the rest
    holder.clear()
    for _ in range(10):  # quiet collections before the thaw walk only the unfrozen heap
        clocks.advance(31, busy=0.0)
        assert full.tick()
    assert gone() is not None
    clocks.advance(300, busy=0.0)  # 600 s since the last thaw
    assert full.tick()
    assert gone() is None


def test_socket_events_are_not_quiet_even_when_the_cpu_figure_is_low() -> None:
    clocks, events = Clocks(), [0]
    full = FullCollections(min_interval_s=30, clock=lambda: clocks.wall,
                           cpu_clock=lambda: clocks.cpu, activity=lambda: events[0])
    for _ in range(60):  # ballots arriving while a loaded machine starves the process of CPU
        clocks.advance(1, busy=0.02)
        events[0] += 100
        assert not full.tick()
    clocks.advance(1, busy=0.02)
    events[0] += 2
    assert not full.tick()
    clocks.advance(1, busy=0.02)
    events[0] += 2
    assert full.tick()
