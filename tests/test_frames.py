"""Coordinate frames and the Qwen2-VL smart-resize (compared with transformers' own code)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hoi_r1.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Frame, smart_resize

qwen2_vl = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")

PIXEL_SETTINGS = [
    (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
    (256 * 28 * 28, 1280 * 28 * 28),  # the Qwen2.5-VL model cards' suggestion
    (4 * 28 * 28, 16384 * 28 * 28),
    (3136, 12845056),
    (100 * 100, 300 * 300),
]


def _sizes() -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 5000, size=(3000, 2))]
    sizes += [(int(h), int(w)) for h, w in rng.integers(1, 200, size=(1000, 2))]
    halves = [14 * k for k in range(1, 80, 2)]  # odd multiples of 14: round() ties at .5
    sizes += [(h, w) for h in halves for w in halves[::3]]
    sizes += [(1, 200), (200, 1), (28, 5600), (1, 1), (10000, 10000), (480, 640), (427, 640), (640, 427)]
    return [(h, w) for h, w in sizes if max(h, w) / min(h, w) <= 200]


@pytest.mark.parametrize("min_pixels,max_pixels", PIXEL_SETTINGS)
def test_smart_resize_matches_transformers(min_pixels, max_pixels):
    for h, w in _sizes():
        expected = qwen2_vl.smart_resize(h, w, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
        assert smart_resize(h, w, 28, min_pixels, max_pixels) == tuple(expected), (h, w)


def test_smart_resize_other_factor_matches_transformers():
    for h, w in _sizes()[:500]:
        assert smart_resize(h, w, factor=32) == tuple(qwen2_vl.smart_resize(h, w, factor=32)), (h, w)


def test_smart_resize_refuses_extreme_aspect_and_bad_sizes():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 201)
    with pytest.raises(ValueError):  # transformers refuses it too
        qwen2_vl.smart_resize(1, 201)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)


def test_resized_size_is_what_the_image_processor_produces():
    processor = qwen2_vl.Qwen2VLImageProcessor(min_pixels=256 * 28 * 28, max_pixels=512 * 28 * 28)
    for w, h in [(640, 480), (333, 500), (1000, 120), (50, 61)]:
        image = Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8))
        grid_t, grid_h, grid_w = processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
        frame = Frame.for_image("absolute_resized", w, h, min_pixels=256 * 28 * 28, max_pixels=512 * 28 * 28)
        assert frame.resized_size == (grid_w * 14, grid_h * 14)


@pytest.mark.parametrize("kind", ["absolute_resized", "normalized_1000", "absolute_original"])
def test_round_trip_within_half_a_text_unit(kind):
    rng = np.random.default_rng(1)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(20, 3000, size=2))
        frame = Frame.for_image(kind, w, h)
        xy = rng.uniform(0, 1, size=(5, 4)) * [w, h, w, h]
        boxes = np.concatenate([np.minimum(xy[:, :2], xy[:, 2:]), np.maximum(xy[:, :2], xy[:, 2:])], axis=1)
        text = frame.to_text(boxes)
        assert text.dtype == np.int64
        tw, th = frame.text_size
        assert (text >= 0).all() and (text[:, [0, 2]] <= tw).all() and (text[:, [1, 3]] <= th).all()
        back = frame.from_text(text)
        sx, sy = frame.scale
        tolerance = np.array([0.5 / sx, 0.5 / sy] * 2) + 1e-9
        assert (np.abs(back - boxes) <= tolerance).all()


def test_text_sizes_and_values():
    f = Frame("absolute_resized", (640, 480), (644, 476))
    assert f.text_size == (644, 476)
    assert Frame("normalized_1000", (640, 480), (644, 476)).text_size == (1000, 1000)
    assert Frame("absolute_original", (640, 480), (644, 476)).text_size == (640, 480)
    assert f.to_text([[0, 0, 640, 480]]).tolist() == [[0, 0, 644, 476]]
    # rounding half up, then clipping to the image
    g = Frame("absolute_original", (100, 100), (112, 112))
    assert g.to_text([[0.5, 1.49, 99.5, 120]]).tolist() == [[1, 1, 100, 100]]
    assert g.to_text([[-3, -0.2, 50, 50]]).tolist() == [[0, 0, 50, 50]]
    assert Frame("normalized_1000", (200, 100), (224, 112)).from_text([[500, 500, 1000, 1000]]).tolist() == [
        [100.0, 50.0, 200.0, 100.0]
    ]


def test_from_text_never_raises_on_extreme_numbers():
    f = Frame("absolute_resized", (4000, 4000), (1008, 1008))  # text units larger than pixels
    out = f.from_text([[1e308, -1e308, float("nan"), float("inf")]])
    assert np.isinf(out[0, 0]) and np.isinf(out[0, 1]) and np.isnan(out[0, 2])
    assert f.from_text([]).shape == (0, 4)


def test_frame_validation():
    with pytest.raises(ValueError, match="kind"):
        Frame("pixels", (10, 10), (10, 10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="original_size"):
        Frame("absolute_original", (0, 10), (10, 10))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        Frame("absolute_original", (10, 10), (10, 10)).to_text([1, 2, 3])
    assert Frame.for_image("absolute_original", 640, 480).resized_size == (644, 476)
