"""The downlink allocator (media/allocator.py): priorities, hysteresis, floor, hostile feedback."""

from __future__ import annotations

from media.allocator import Allocator, Priority, VideoDemand, Want

LAYERS = (150_000, 500_000, 1_500_000)
AUDIO = 40_000


def cam(name: str, priority: Priority = Priority.OTHER, want: Want = Want.HIGH,
        layers: tuple[int, ...] = LAYERS) -> VideoDemand:
    return VideoDemand(name, priority, layers, want)


def run(alloc: Allocator, videos: list[VideoDemand], remb: int, start: float,
        seconds: float) -> dict[str, int | None]:
    """Feed `remb` once a second from `start` for `seconds`, allocating each time."""
    t = start
    layers: dict[str, int | None] = {}
    while t <= start + seconds:
        alloc.on_remb(remb, t)
        layers = alloc.allocate(videos, t).layers
        t += 1.0
    return layers


def test_without_feedback_every_camera_stays_on_the_low_layer() -> None:
    alloc = Allocator()
    result = alloc.allocate([cam("a"), cam("b", Priority.SPEAKER)], 0.0)
    assert result.layers == {"a": 0, "b": 0}
    assert result.estimate_bps is None and not result.video_off


def test_a_rich_estimate_raises_one_layer_at_a_time_after_the_hold() -> None:
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a")]
    assert run(alloc, videos, 5_000_000, 0.0, 1.0) == {"a": 0}  # hold not over yet
    assert run(alloc, videos, 5_000_000, 2.0, 0.0) == {"a": 1}  # one step only
    assert run(alloc, videos, 5_000_000, 3.0, 0.0) == {"a": 1}  # the next hold starts
    assert run(alloc, videos, 5_000_000, 4.0, 0.0) == {"a": 2}


def test_a_drop_lowers_at_once_and_a_flapping_estimate_never_raises() -> None:
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a")]
    assert run(alloc, videos, 5_000_000, 0.0, 6.0) == {"a": 2}
    assert run(alloc, videos, 200_000, 7.0, 0.0) == {"a": 0}  # 500k + 150k don't fit
    for t in range(8, 20):  # good, bad, good, bad...: the hold never completes
        layers = run(alloc, videos, 5_000_000 if t % 2 else 200_000, float(t), 0.0)
        assert layers == {"a": 0}


def test_the_speaker_is_raised_first_and_the_rest_stay_low() -> None:
    alloc = Allocator(raise_hold_s=1.0)
    videos = [cam("grid1"), cam("speaker", Priority.SPEAKER), cam("grid2")]
    # 2.1M - audio 40k - three low layers 450k leaves 1.61M: the speaker's top layer
    # (1.5M x 1.15 - 150k = 1.575M more) fits, nobody else's next layer does then.
    layers = run(alloc, videos, 2_100_000, 0.0, 6.0)
    assert layers == {"speaker": 2, "grid1": 0, "grid2": 0}


def test_screen_share_comes_before_thumbnails_and_what_does_not_fit_is_paused() -> None:
    alloc = Allocator(startup_grace_s=0.0)
    videos = [cam("thumb"), cam("screen", Priority.SCREEN, layers=(900_000,))]
    alloc.on_loss(0.3, 0.0)  # pausing needs loss in the receiver reports (below)
    layers = run(alloc, videos, 1_000_000, 0.0, 0.0)
    assert layers == {"screen": 0, "thumb": None}


def test_wants_cap_the_layer_and_off_pauses() -> None:
    alloc = Allocator(raise_hold_s=1.0)
    videos = [cam("low", want=Want.LOW), cam("off", want=Want.OFF), cam("high")]
    assert run(alloc, videos, 10_000_000, 0.0, 5.0) == {"low": 0, "off": None, "high": 2}


def test_below_the_floor_video_goes_off_and_comes_back_by_itself() -> None:
    alloc = Allocator(raise_hold_s=2.0, video_floor_bps=120_000, startup_grace_s=0.0)
    videos = [cam("a")]
    alloc.on_remb(100_000, 0.0)
    alloc.on_loss(0.3, 0.0)  # a real fall: the receiver reports show loss too
    result = alloc.allocate(videos, 0.0)
    assert result.video_off and result.layers == {"a": None}
    assert alloc.stats.video_off_events == 1
    alloc.on_remb(300_000, 1.0)
    assert alloc.allocate(videos, 1.0).video_off  # held, not yet
    alloc.on_remb(300_000, 3.0)
    result = alloc.allocate(videos, 3.0)
    assert not result.video_off and result.layers == {"a": 0}


def test_absurd_remb_values_are_refused_and_counted() -> None:
    alloc = Allocator()
    for value in (0, -5, 3, 2**63, 262143 << 63):  # 0, tiny, exponent tricks
        assert not alloc.on_remb(value, 0.0)
    assert alloc.stats.remb_absurd == 5
    assert alloc.estimate(0.0) is None
    assert alloc.allocate([cam("a")], 0.0).layers == {"a": 0}


def test_feedback_that_stops_falls_back_to_the_low_layer_counted() -> None:
    alloc = Allocator(raise_hold_s=1.0)
    videos = [cam("a")]
    assert run(alloc, videos, 10_000_000, 0.0, 4.0) == {"a": 2}
    result = alloc.allocate(videos, 11.0)  # the last REMB was at 4 s
    assert result.layers == {"a": 0} and result.estimate_bps is None
    assert alloc.stats.no_feedback == 1


def test_an_unmeasured_layer_is_costed_at_its_nominal_rate() -> None:
    alloc = Allocator(raise_hold_s=1.0)
    # Nothing measured yet: 150k + 40k audio fits 200k, the nominal 500k layer does not
    # (and 200k is under 1.4 x the 150k of video in use: no probe either).
    assert run(alloc, [cam("a", layers=(0, 0, 0))], 200_000, 0.0, 5.0) == {"a": 0}


def test_a_real_receivers_uncongested_remb_tries_the_next_layer_with_audio_beside() -> None:
    # A receiver's REMB covers what carries abs-send-time (video) and says at most 1.5x +
    # 10 kbit/s of what arrives (aiortc's and libwebrtc's AIMD cap): 1.5 x 350k + 10k =
    # 535k on layer 1, under 1.4 x (350k + 40k audio). Measured in bench/network.py: the
    # top layer was then never tried.
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a", layers=(150_000, 350_000, 1_100_000))]
    assert run(alloc, videos, int(1.5 * 150_000) + 10_000, 0.0, 3.0) == {"a": 1}
    assert run(alloc, videos, int(1.5 * 350_000) + 10_000, 4.0, 4.0) == {"a": 2}


def test_an_uncongested_estimate_probes_the_next_layer_and_backs_off_when_it_fails() -> None:
    # REMB says at most ~1.5x what arrives: 300k while 190k arrives never fits the 500k
    # layer, but shows no congestion, so the next layer is tried after the hold.
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a")]
    assert run(alloc, videos, 300_000, 0.0, 1.0) == {"a": 0}
    assert run(alloc, videos, 300_000, 2.0, 0.0) == {"a": 1}
    assert run(alloc, videos, 250_000, 3.0, 0.0) == {"a": 0}  # it did not fit: at once
    assert alloc.probe_hold_s == 4.0  # the next try waits twice as long
    # (a try of the same layer again needs 1.1x the estimate that failed: below)
    assert run(alloc, videos, 340_000, 4.0, 3.0) == {"a": 0}
    assert run(alloc, videos, 340_000, 8.0, 0.0) == {"a": 1}
    assert run(alloc, videos, 650_000, 9.0, 20.0) == {"a": 1}  # it held: the hold is reset
    assert alloc.probe_hold_s == 2.0


def test_a_try_is_kept_while_the_estimate_climbs_and_left_when_it_falls() -> None:
    # After a raise Chrome's REMB climbs towards what now arrives by some 5 %/s: below the
    # new layer's rate for seconds (measured: 560k -> 970k in 8 s on the 1.2M layer), which
    # is no congestion. The layer is kept while the estimate does not fall.
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a")]
    assert run(alloc, videos, 300_000, 0.0, 2.0) == {"a": 1}  # tried at 2 s
    estimate = 300_000
    for t in range(3, 16):  # 4 %/s: 500k - 150k is not in the budget before 8 s
        estimate = int(estimate * 1.04)
        assert run(alloc, videos, estimate, float(t), 0.0) == {"a": 1}, t
    assert run(alloc, videos, 330_000, 16.0, 0.0) == {"a": 0}  # a fall: lowered at once


def test_a_layer_whose_try_failed_is_tried_again_only_on_a_higher_estimate() -> None:
    # A 300 kbit/s ward's REMB sits at its cap (uncongested) below its link: each try of
    # the 500k layer costs it a freeze. After one failed, the same estimate tries no more.
    alloc = Allocator(raise_hold_s=2.0)
    videos = [cam("a")]
    assert run(alloc, videos, 300_000, 0.0, 2.0) == {"a": 1}  # tried at 2 s
    assert run(alloc, videos, 200_000, 3.0, 0.0) == {"a": 0}  # it failed
    for t in range(4, 60):  # the hold (4 s) passes many times over: no new try
        assert run(alloc, videos, 300_000, float(t), 0.0) == {"a": 0}, t
    assert run(alloc, videos, 340_000, 60.0, 4.0) == {"a": 1}  # 1.1x more: tried again


def test_heavy_loss_lowers_like_a_falling_estimate_until_the_loss_is_gone() -> None:
    # A drop-tail bottleneck's full queue keeps the delay flat: the receiver's REMB stays
    # high while 40 % of the packets are lost. GCC's loss rule caps the estimate at what is
    # sent x (1 - loss / 2), per receiver report, never below the low layer.
    alloc = Allocator(raise_hold_s=1.0)
    videos = [cam("a")]
    assert run(alloc, videos, 5_000_000, 0.0, 4.0) == {"a": 2}
    assert alloc.on_loss(0.4, 4.5) and alloc.on_loss(0.4, 4.5)  # video 1.5M -> 1.2M -> 960k
    assert run(alloc, videos, 5_000_000, 5.0, 0.0) == {"a": 1}  # REMB unmoved: lowered
    for _ in range(10):
        alloc.on_loss(0.6, 5.5)
    result = alloc.allocate(videos, 5.5)
    assert result.layers == {"a": 0} and not result.video_off  # the floor: audio + low
    assert not alloc.on_loss(0.05, 5.5)  # between 2 and 10 %: the cap stays
    assert run(alloc, videos, 5_000_000, 6.0, 3.0) == {"a": 0}
    assert not alloc.on_loss(0.0, 9.5)  # gone: the REMB rules again
    assert run(alloc, videos, 5_000_000, 10.0, 6.0) == {"a": 2}


def test_audio_only_tries_video_again_though_the_remb_cannot_show_a_recovery() -> None:
    # A REMB is measured on video: with none flowing, Chrome's sinks to its floor and stays
    # there (a starved Chromium on a clean link stayed audio only for good). Video is tried
    # again after off_retry_s (+ the hold), then, failing, after twice as long.
    alloc = Allocator(raise_hold_s=2.0, off_retry_s=5.0, startup_grace_s=0.0)
    videos = [cam("a")]
    assert run(alloc, videos, 300_000, 0.0, 2.0) == {"a": 1}  # a try at 2 s
    assert alloc.allocate(videos, 2.5).layers == {"a": 1}
    alloc.on_remb(20_000, 3.0)
    alloc.on_loss(0.5, 3.0)  # and the receiver reports show loss
    assert alloc.allocate(videos, 3.0).video_off  # and the try failed: hold 4 s
    for t in range(4, 32):  # 5 s x 2 (the back-off) + the 4 s hold: off until 17 s, then
        alloc.on_remb(20_000, float(t))  # on while the estimate does not fall (a try)
        result = alloc.allocate(videos, float(t))
        assert result.video_off == (t < 17), t
        assert result.layers == {"a": None if t < 17 else 0}
    alloc.on_remb(20_000, 32.0)  # the try is over and the estimate never rose: off again
    alloc.on_loss(0.5, 32.0)  # (video flows again on the weak link: loss again)
    assert alloc.allocate(videos, 32.0).video_off
    assert alloc.stats.video_off_events == 2


def test_the_estimate_is_the_video_budget_for_floor_and_fit_audio_is_not_taken_off() -> None:
    # A REMB is measured on what carries abs-send-time: video only. A browser's first REMB
    # of 90 kbit/s is over the 60 kbit/s floor (it was "under" it with 40k of audio taken
    # off, and sent the subscriber to audio only), and two 150k low layers fit 320 kbit/s.
    alone = Allocator()
    assert run(alone, [cam("a")], 90_000, 0.0, 12.0) == {"a": 0}  # past the grace too
    assert not alone.video_off and alone.stats.video_off_events == 0
    two = Allocator()
    assert run(two, [cam("a"), cam("b")], 320_000, 0.0, 12.0) == {"a": 0, "b": 0}


def test_the_start_up_grace_neither_pauses_nor_cuts_video_while_the_first_estimate_rises(
        ) -> None:
    # A just-joined (or CPU-starved) Chromium's first REMBs are low and climb: for the
    # grace nothing is paused and video never goes off; after it the floor applies again.
    alloc = Allocator()
    videos = [cam("speaker", Priority.SPEAKER), cam("b")]
    for t in range(10):
        alloc.on_remb(30_000 + 10_000 * t, float(t))
        result = alloc.allocate(videos, float(t))
        assert result.layers == {"speaker": 0, "b": 0} and not result.video_off, t
    alloc.on_remb(30_000, 10.0)
    alloc.on_loss(0.3, 10.0)
    assert alloc.allocate(videos, 10.0).video_off  # the grace (10 s) is over: below the floor
    assert alloc.stats.video_off_events == 1


def test_the_grace_starts_again_with_the_first_estimate_after_a_spell_without_one() -> None:
    alloc = Allocator()
    videos = [cam("a"), cam("b")]
    assert run(alloc, videos, 1_000_000, 0.0, 12.0) == {"a": 2, "b": 0}
    assert alloc.allocate(videos, 20.0).estimate_bps is None  # stale: none for 8 s
    alloc.on_remb(200_000, 21.0)  # video starts again: a low first estimate
    assert alloc.allocate(videos, 21.0).layers == {"a": 0, "b": 0}  # b not paused
    alloc.on_remb(200_000, 32.0)
    alloc.on_loss(0.3, 32.0)
    assert alloc.allocate(videos, 32.0).layers == {"a": 0, "b": None}  # the grace is over


def test_a_cheap_low_layer_keeps_video_on_an_estimate_under_the_floor_that_carries_it(
        ) -> None:
    # A REMB says at most ~1.5x + 10 kbit/s of what arrives: a still camera's 25 kbit/s low
    # layer gives ~47 kbit/s on a perfect link, under the 60 kbit/s floor (a Chromium meeting
    # on loopback went audio only at the end of the grace). Audio only needs the estimate
    # under what the low layer needs as well; a real fall below it still cuts video.
    alloc = Allocator(startup_grace_s=0.0)
    videos = [cam("still", layers=(25_000, 80_000, 200_000))]
    for t in range(12):
        alloc.on_remb(int(1.5 * 25_000) + 10_000, float(t))
        result = alloc.allocate(videos, float(t))
        assert not result.video_off and result.layers["still"] is not None, t
    alloc.on_remb(20_000, 12.0)  # under what the low layer needs, with loss: congestion
    alloc.on_loss(0.3, 12.0)
    assert alloc.allocate(videos, 12.0).video_off


def test_the_loss_cap_never_cuts_video_below_the_low_layer_as_it_measures_now() -> None:
    # The cap's least was the low layer's rate when the loss came; a starved publisher's
    # low layer measured 37 kbit/s then and 120 kbit/s later: the old cap (under the floor)
    # sent a 300 kbit/s Chromium ward to audio only on an 83 kbit/s estimate, for 46 s.
    alloc = Allocator(startup_grace_s=0.0, raise_hold_s=1.0)
    starved = [cam("a", layers=(37_000, 100_000, 300_000))]
    assert run(alloc, starved, 45_000, 0.0, 2.0) == {"a": 0}
    for _ in range(5):
        alloc.on_loss(0.6, 2.5)  # the cap falls to the 37k low layer
    recovered = [cam("a", layers=(120_000, 350_000, 1_000_000))]
    alloc.on_remb(83_000, 3.0)
    result = alloc.allocate(recovered, 3.0)
    assert not result.video_off and result.layers["a"] is not None


def test_a_remb_that_collapses_without_loss_keeps_video_flowing_at_the_low_layer() -> None:
    # A CPU-starved Chromium's REMB collapsed on a perfect loopback link (415 -> 10.6 kbit/s
    # in the allocation trace) while its receiver reports showed no loss: that is no link
    # below the low layer (which could not avoid loss), so layers go down, video stays on.
    alloc = Allocator(raise_hold_s=1.0)
    videos = [cam("speaker", Priority.SPEAKER), cam("thumb")]
    assert run(alloc, videos, 10_000_000, 0.0, 12.0) == {"speaker": 2, "thumb": 2}
    for t in range(13, 60):
        alloc.on_remb(10_600, float(t))
        alloc.on_loss(0.0, float(t))
        result = alloc.allocate(videos, float(t))
        assert result.layers == {"speaker": 0, "thumb": 0} and not result.video_off, t
    assert alloc.stats.video_off_events == 0


def test_a_remb_that_collapses_with_loss_goes_audio_only_and_comes_back() -> None:
    alloc = Allocator(raise_hold_s=1.0, off_retry_s=5.0)
    videos = [cam("a")]
    assert run(alloc, videos, 10_000_000, 0.0, 12.0) == {"a": 2}
    alloc.on_remb(10_600, 13.0)
    alloc.on_loss(0.4, 13.0)  # a link below the low layer: the reports show the loss
    result = alloc.allocate(videos, 13.0)
    assert result.video_off and result.layers == {"a": None}
    assert alloc.stats.video_off_events == 1
    back = None
    for t in range(14, 40):  # the link recovers; no video, so the REMB cannot show it
        alloc.on_remb(10_600 if t < 20 else 400_000, float(t))
        if not alloc.allocate(videos, float(t)).video_off:
            back = t
            break
    # back by itself: the retry after 5 s x the back-off (the top layer's try failed: x 2)
    assert back is not None and back <= 25, back
    for t in range(back + 1, back + 10):
        alloc.on_remb(400_000, float(t))
        alloc.on_loss(0.0, float(t))
        assert alloc.allocate(videos, float(t)).layers["a"] is not None, t


def test_a_low_estimate_with_light_loss_goes_audio_only_only_once_it_has_lasted() -> None:
    # 2-10 % loss is no proof on its own (a loaded receiver can drop a packet or two); an
    # estimate under the floor for low_long_s with it is.
    alloc = Allocator(startup_grace_s=0.0, low_long_s=10.0)
    videos = [cam("a")]
    for t in range(10):
        alloc.on_remb(20_000, float(t))
        alloc.on_loss(0.05, float(t))
        assert not alloc.allocate(videos, float(t)).video_off, t
    alloc.on_remb(20_000, 10.0)
    alloc.on_loss(0.05, 10.0)
    assert alloc.allocate(videos, 10.0).video_off


def test_a_stream_that_does_not_fit_is_paused_only_with_loss_and_stays_until_it_fits() -> None:
    alloc = Allocator(startup_grace_s=0.0)
    videos = [cam("speaker", Priority.SPEAKER), cam("thumb")]
    # 200k carries one 150k low layer, not two: without loss both keep flowing
    assert run(alloc, videos, 200_000, 0.0, 5.0) == {"speaker": 0, "thumb": 0}
    alloc.on_loss(0.3, 6.0)
    assert run(alloc, videos, 200_000, 6.0, 0.0) == {"speaker": 0, "thumb": None}
    alloc.on_loss(0.0, 7.0)  # the loss went with the paused stream: it stays paused
    assert run(alloc, videos, 200_000, 7.0, 10.0) == {"speaker": 0, "thumb": None}
    assert run(alloc, videos, 400_000, 18.0, 0.0) == {"speaker": 0, "thumb": 0}  # it fits
