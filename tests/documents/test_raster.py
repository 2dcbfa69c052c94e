"""Pixel caps: no page geometry makes any image (render, thumbnail, placeholder) larger than
the caps, in pixels, per side or in aspect ratio."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pymupdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from documents import jobs, raster
from documents.raster import MAX_SIDE_PX, RasterSpec, fit
from tests.documents import corpus

SPEC = RasterSpec()
THUMB = raster.thumb_spec(200)

any_float = st.floats(allow_nan=True, allow_infinity=True)
page_side = st.one_of(any_float, st.floats(min_value=1e-9, max_value=1e12))
specs = st.builds(
    RasterSpec,
    width=st.integers(1, 20_000),
    max_height=st.integers(1, 20_000),
    max_pixels=st.integers(1, 50_000_000),
    max_aspect=st.floats(0.5, 100),
)


def within(plan: raster.ZoomPlan, spec: RasterSpec) -> None:
    assert 1 <= plan.width_px <= min(MAX_SIDE_PX, max(1, spec.width))
    assert 1 <= plan.height_px <= min(MAX_SIDE_PX, max(1, spec.max_height))
    assert plan.width_px * plan.height_px <= max(1, spec.max_pixels)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(page_side, page_side, specs)
def test_fit_stays_within_every_cap(width_pt: float, height_pt: float, spec: RasterSpec) -> None:
    within(fit(width_pt, height_pt, spec), spec)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(page_side, page_side)
def test_images_and_their_thumbnails_keep_the_aspect_cap(width_pt: float,
                                                         height_pt: float) -> None:
    plan = fit(width_pt, height_pt, SPEC)
    thumb = fit(plan.width_px, plan.height_px, THUMB)
    within(thumb, THUMB)
    for w, h in ((plan.width_px, plan.height_px), (thumb.width_px, thumb.height_px)):
        # Rounding to whole pixels may add one pixel's worth to the shorter side's ratio.
        assert max(w, h) <= SPEC.max_aspect * min(w, h) + SPEC.max_aspect


def test_the_reported_page_is_a_205_by_4096_image_with_a_200_by_4000_thumbnail() -> None:
    # [0 0 1 100000]: before the caps, its placeholder thumbnail was 200 × 819 200 px.
    plan = fit(1, 100_000, SPEC)
    assert (plan.width_px, plan.height_px) == (205, 4096) and plan.reshaped
    thumb = fit(plan.width_px, plan.height_px, THUMB)
    assert thumb.width_px == 200 and thumb.height_px <= 4000


def test_ordinary_pages_keep_their_shape_and_width() -> None:
    plan = fit(595, 842, SPEC)
    assert plan.width_px == 1536 and plan.height_px == round(842 * 1536 / 595)
    assert not plan.reshaped and not plan.downscaled
    assert plan.zoom_x == pytest.approx(plan.zoom_y, rel=1e-3)  # whole pixels: < 1 px off


@pytest.mark.parametrize("value", [0.0, -5.0, math.nan, math.inf])
def test_unusable_sizes_get_an_a4_shaped_image(value: float) -> None:
    plan = fit(value, 842, SPEC)
    assert plan.reshaped and plan.width_px == 1536 and plan.height_px == round(842 * 1536 / 595)
    with pytest.raises(ValueError):
        raster.plan_zoom(value, 842, SPEC)  # but nothing is rendered from such a box


@pytest.mark.parametrize("name", list(corpus.HOSTILE_PAGE_BOXES))
def test_hostile_page_boxes_render_within_the_caps(name: str, tmp_path: Path) -> None:
    path = corpus.make_page_box_pdf(tmp_path, name, corpus.HOSTILE_PAGE_BOXES[name])
    out = tmp_path / "page.jpg", tmp_path / "thumb.jpg"
    result = jobs.render_page(str(path), 0, str(out[0]), str(out[1]), SPEC, 200, 70, "t")
    for file, spec in zip(out, (SPEC, THUMB), strict=True):
        with Image.open(file) as img:
            w, h = img.size
        assert w <= spec.width and h <= spec.max_height and w * h <= spec.max_pixels
        assert max(w, h) <= SPEC.max_aspect * min(w, h) + SPEC.max_aspect
    assert not list(tmp_path.glob("*.tmp-*"))
    with pymupdf.open(path) as doc:
        rect = doc[0].rect
    ratio = max(rect.width, rect.height) / min(rect.width, rect.height)
    assert result.reshaped == (ratio > SPEC.max_aspect)


@pytest.mark.parametrize(("width_pt", "height_pt"),
                         [(1, 100_000), (100_000, 1), (math.nan, 1), (1e-30, 1e30), (0, 0)])
def test_placeholders_are_capped_like_renders(width_pt: float, height_pt: float,
                                              tmp_path: Path) -> None:
    page, thumb = tmp_path / "p.jpg", tmp_path / "t.jpg"
    size = jobs.write_placeholder(str(page), str(thumb), width_pt, height_pt, SPEC, 200, "t")
    with Image.open(page) as img:
        assert img.size == size
        within(fit(*img.size, SPEC), SPEC)
    with Image.open(thumb) as img:
        assert img.width == 200 and img.height <= 4000
    view = Image.open(io.BytesIO(jobs.placeholder_view(width_pt, height_pt, SPEC)))
    assert view.size == size


def test_placeholder_refuses_sizes_beyond_the_caps() -> None:
    with pytest.raises(ValueError):
        raster.placeholder_jpeg(200, 819_200)
