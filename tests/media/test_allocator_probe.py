"""The allocator with transport-cc (media/allocator.py, `padding_probes`): it asks for a padding
probe (`Allocation.probe_bps`, media/probe.py) where it would try a layer blind, and raises
only once the estimate fits; without it (REMB) it tries the layer as before."""

from __future__ import annotations

from media.allocator import Allocator, Priority

from .test_allocator import cam, run

LAYERS = (150_000, 500_000, 1_500_000)


def test_an_uncongested_estimate_asks_for_a_probe_instead_of_trying_the_next_layer() -> None:
    # 300k while 150k is sent: no congestion, but the 500k layer does not fit. REMB-only, the
    # layer is tried after the hold (test_allocator.py); with padding probes it stays, and
    # the allocation says what estimate the raise needs: 500k x 1.15 - 150k + 150k.
    blind = Allocator(raise_hold_s=2.0)
    assert run(blind, [cam("a")], 300_000, 0.0, 3.0) == {"a": 1}
    alloc = Allocator(raise_hold_s=2.0, padding_probes=True)
    assert run(alloc, [cam("a")], 300_000, 0.0, 10.0) == {"a": 0}
    allocation = alloc.allocate([cam("a")], 10.5)
    assert allocation.layers == {"a": 0}
    assert allocation.probe_bps == int(LAYERS[1] * 1.15)


def test_once_a_probe_lifted_the_estimate_the_layer_is_raised_after_the_probed_hold() -> None:
    alloc = Allocator(raise_hold_s=2.0, padding_probes=True, probed_hold_s=1.0)
    assert run(alloc, [cam("a")], 300_000, 0.0, 3.0) == {"a": 0}
    # the probe's result: the estimate now fits the middle layer, not the top one
    assert run(alloc, [cam("a")], 700_000, 4.0, 0.0) == {"a": 0}
    assert run(alloc, [cam("a")], 700_000, 5.0, 0.0) == {"a": 1}
    allocation = alloc.allocate([cam("a")], 5.5)
    # for the top layer: 1.5M x 1.15 more than the low layer's 150k, plus that low layer
    assert allocation.probe_bps == int(LAYERS[2] * 1.15)


def test_the_probe_is_asked_for_the_first_stream_short_of_its_top_only() -> None:
    alloc = Allocator(padding_probes=True)
    videos = [cam("grid"), cam("speaker", Priority.SPEAKER)]
    run(alloc, videos, 400_000, 0.0, 3.0)
    allocation = alloc.allocate(videos, 3.5)
    assert allocation.layers == {"speaker": 0, "grid": 0}
    # the speaker's middle layer, the grid's low one beside it
    assert allocation.probe_bps == int(LAYERS[1] * 1.15) + LAYERS[0]


def test_no_probe_is_asked_for_once_every_stream_is_on_the_layer_it_wants() -> None:
    alloc = Allocator(padding_probes=True)
    assert run(alloc, [cam("a")], 5_000_000, 0.0, 6.0) == {"a": 2}
    assert alloc.allocate([cam("a")], 6.5).probe_bps is None


def test_a_raise_that_failed_waits_for_a_probe_to_show_more_than_before() -> None:
    # A probe can pass in a shaper's burst (a 4 kB HTB bucket holds a 50 ms cluster at
    # 400 kbit/s) and lift the estimate above a link that cannot carry the layer: the raise
    # then fails. Its layer is raised again only once the estimate is try_bar x its peak
    # during the failed raise, and the probe asked for aims there.
    alloc = Allocator(raise_hold_s=2.0, padding_probes=True, probed_hold_s=1.0)
    assert run(alloc, [cam("a")], 700_000, 0.0, 1.0) == {"a": 1}  # a probe lifted it
    assert run(alloc, [cam("a")], 250_000, 2.0, 0.0) == {"a": 0}  # the link could not
    assert run(alloc, [cam("a")], 700_000, 3.0, 5.0) == {"a": 0}  # not again on as much
    assert alloc.allocate([cam("a")], 8.5).probe_bps == int(700_000 * 1.1)
    assert run(alloc, [cam("a")], 780_000, 9.0, 1.0) == {"a": 1}
