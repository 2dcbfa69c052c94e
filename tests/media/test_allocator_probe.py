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


def test_after_a_fall_a_stream_that_no_longer_fits_goes_to_its_low_layer_then_climbs() -> None:
    """A link that fell under what was sent (media/link_fall.py): the low layer, whose
    keyframe is the smallest to cross the bottleneck's drained queue, not the middle one that
    would fit (its keyframe and the frames after it overflowed a 500 kbit/s link's 200 ms
    queue in bench/network.py); nothing raised nor probed for fall_s, then as usual."""
    alloc = Allocator(padding_probes=True, probed_hold_s=1.0, fall_s=1.0)
    assert run(alloc, [cam("a")], 5_000_000, 0.0, 6.0) == {"a": 2}
    alloc.on_fall(7.0)
    assert alloc.stats.link_falls == 1  # counted: hopso_media_downlink_events_total
    alloc.on_remb(800_000, 7.0)  # the middle layer fits: 500k x 1.15 over the low one
    allocation = alloc.allocate([cam("a")], 7.0)
    assert allocation.layers == {"a": 0} and allocation.probe_bps is None
    assert alloc.allocate([cam("a")], 7.9).layers == {"a": 0}
    assert alloc.allocate([cam("a")], 8.1).layers == {"a": 0}  # the raise's hold begins
    assert alloc.allocate([cam("a")], 9.2).layers == {"a": 1}


def test_a_fall_of_a_link_long_on_the_top_layer_bars_no_later_raise_to_it() -> None:
    """A link that fell 8 s after the top layer's raise (test_weak_links' drop): the link
    changed, the layer's try did not fail, so no try bar (1.1x the estimate before the fall,
    ~2.6 Mbit/s there, for 60 s) keeps it off the top layer once the link is back and the
    estimate fits it (2 Mbit/s for 1.5 Mbit/s x 1.15): at load 17 the probes did not reach
    such a bar and the subscriber stayed on the middle layer to the call's end."""
    alloc = Allocator(padding_probes=True, probed_hold_s=1.0, fall_s=1.0)
    assert run(alloc, [cam("a")], 2_500_000, 0.0, 8.0) == {"a": 2}
    alloc.on_fall(10.0)
    assert run(alloc, [cam("a")], 400_000, 10.0, 9.0) == {"a": 0}
    assert run(alloc, [cam("a")], 2_000_000, 20.0, 5.0) == {"a": 2}
