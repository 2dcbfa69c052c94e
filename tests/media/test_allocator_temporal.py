"""The allocator's temporal step (media/allocator.py): between spatial layers, a stream whose
pictures carry VP8 temporal layers first drops to TID 1, then 0, of the layer it is on (no
keyframe needed) before its spatial layer is lowered; back at once when the layer fits, and
down a spatial layer (at the camera's frame rate) when it has not fitted for temporal_step_s."""

from __future__ import annotations

from media.allocator import TEMPORAL_SHARE, Allocation, Allocator, Priority, VideoDemand

LAYERS = (150_000, 500_000, 1_500_000)


def cam(temporal: bool = True) -> VideoDemand:
    return VideoDemand("a", Priority.SPEAKER, LAYERS, temporal=temporal)


def at(alloc: Allocator, video: VideoDemand, remb: int, t: float) -> Allocation:
    alloc.on_remb(remb, t)
    return alloc.allocate([video], t)


def test_a_falling_estimate_steps_down_the_frame_rate_before_the_layer() -> None:
    alloc = Allocator(raise_hold_s=1.0, startup_grace_s=0.0)
    video = cam()
    for t in range(8):
        result = at(alloc, video, 5_000_000, float(t))
    assert result.layers == {"a": 2} and result.temporal == {}
    # 1.0M: the top layer (1.5M) does not fit, 60 % of it (TID <= 1) does.
    assert TEMPORAL_SHARE == (0.4, 0.6)
    result = at(alloc, video, 1_000_000, 8.0)
    assert (result.layers, result.temporal) == ({"a": 2}, {"a": 1})
    result = at(alloc, video, 600_000, 9.0)  # 40 % (TID 0) fits
    assert (result.layers, result.temporal) == ({"a": 2}, {"a": 0})
    result = at(alloc, video, 400_000, 9.5)  # not even that: the middle layer, at TID 1
    assert (result.layers, result.temporal) == ({"a": 1}, {"a": 1})
    result = at(alloc, video, 5_000_000, 11.0)  # the middle layer whole at once
    assert (result.layers, result.temporal) == ({"a": 1}, {})


def test_back_to_every_picture_as_soon_as_the_layer_fits() -> None:
    alloc = Allocator(raise_hold_s=1.0, startup_grace_s=0.0)
    video = cam()
    for t in range(8):
        at(alloc, video, 5_000_000, float(t))
    assert at(alloc, video, 1_000_000, 8.0).temporal == {"a": 1}
    result = at(alloc, video, 2_000_000, 9.0)
    assert (result.layers, result.temporal) == ({"a": 2}, {})


def test_without_temporal_layers_the_spatial_layer_goes_down_as_before() -> None:
    alloc = Allocator(raise_hold_s=1.0, startup_grace_s=0.0)
    video = cam(temporal=False)
    for t in range(8):
        at(alloc, video, 5_000_000, float(t))
    result = at(alloc, video, 1_000_000, 8.0)
    assert (result.layers, result.temporal) == ({"a": 1}, {})


def test_a_temporal_step_is_a_bridge_then_the_spatial_layer_goes_down() -> None:
    """5 fps of the top layer is no place for a weak ward to stay: after temporal_step_s on a
    step, the layer that fits whole is taken (its keyframe crosses a queue the step drained)."""
    alloc = Allocator(raise_hold_s=1.0, startup_grace_s=0.0, temporal_step_s=2.0)
    video = cam()
    for t in range(8):
        at(alloc, video, 5_000_000, float(t))
    for t in (8.0, 9.0, 9.9):  # 600k: the top layer at TID 0 fits, the middle one whole too
        result = at(alloc, video, 600_000, t)
        assert (result.layers, result.temporal) == ({"a": 2}, {"a": 0})
    for t in (10.0, 11.0, 14.0):
        result = at(alloc, video, 600_000, t)
        assert (result.layers, result.temporal) == ({"a": 1}, {})
    # A new fall later is bridged again.
    for t in range(15, 30):
        at(alloc, video, 5_000_000, float(t))
    result = at(alloc, video, 1_000_000, 30.0)
    assert (result.layers, result.temporal) == ({"a": 2}, {"a": 1})
