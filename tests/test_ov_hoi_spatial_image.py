"""The spatial-relations tool and the image operations (crop, imagine)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hoi_r1.ov_hoi.image_ops import MAX_OUTPUT_SIDE, PlainImagineBackend, crop, imagine
from hoi_r1.ov_hoi.spatial import POSITIONS, spatial_relations
from hoi_r1.synthetic.relations import classify_relation

PERSON = [40, 40, 64, 88]  # 24 x 48: one person height is 48 pixels


@pytest.mark.parametrize(
    "obj, expected",
    [
        # hand height, touching the right side
        ([64, 64, 80, 80], {"position": "right", "contact": True, "distance": 0.0, "vertical_position": 0.667}),
        # 16 px gap on the left at head height
        ([8, 40, 24, 56], {"position": "left", "contact": False, "distance": 0.333, "vertical_position": 0.167}),
        # on the head
        ([40, 24, 64, 40], {"position": "above", "contact": True, "distance": 0.0, "vertical_position": -0.167}),
        # under the feet, 24 px below
        ([40, 112, 64, 120], {"position": "below", "contact": False, "distance": 0.5, "bottom_offset": 0.667}),
        # ridden: overlaps the legs
        ([32, 80, 72, 104], {"position": "overlapping", "contact": True, "iou": 0.1, "object_inside_human": 0.2, "human_inside_object": 0.167}),
        # the person inside a big object
        ([0, 0, 100, 100], {"position": "overlapping", "human_inside_object": 1.0, "size_ratio": 8.68}),
        # one pixel apart: within the contact tolerance (0.02 x 48 = 0.96 px)? no; half a pixel: yes
        ([65, 64, 80, 80], {"contact": False, "distance": 0.0208}),
        ([64.5, 64, 80, 80], {"contact": True, "distance": 0.0104}),
    ],
)
def test_annotated_relations(obj, expected):
    relations = spatial_relations(PERSON, obj)
    assert {k: relations[k] for k in expected} == expected


def test_center_distance_and_offsets():
    r = spatial_relations([0, 0, 10, 20], [30, 0, 40, 20])
    assert (r["center_distance"], r["horizontal_offset"], r["distance"], r["iou"]) == (1.5, 1.5, 1.0, 0.0)


@pytest.mark.parametrize("bad", [[0, 0, 0, 10], [0, 0, 10, float("nan")], [1, 2, 3], "box", [5, 5, 1, 1]])
def test_bad_boxes_are_refused(bad):
    with pytest.raises(ValueError, match="human_box"):
        spatial_relations(bad, [0, 0, 1, 1])


boxes = st.tuples(st.integers(-500, 500), st.integers(-500, 500), st.integers(1, 300), st.integers(1, 300)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=200, deadline=None)
@given(boxes, boxes, st.sampled_from([0.5, 2.0, 7.0]))
def test_relation_bounds_and_scale_invariance(h, o, k):
    r = spatial_relations(h, o)
    assert r["position"] in POSITIONS
    for key in ("iou", "object_inside_human", "human_inside_object"):
        assert 0.0 <= r[key] <= 1.0
    assert r["distance"] >= 0 and r["center_distance"] >= r["distance"] - 1e-3 and r["size_ratio"] > 0
    assert (r["position"] == "overlapping") == (r["iou"] > 0 or _shares_area(h, o))
    assert r["contact"] == (r["distance"] <= 0.02) or abs(r["distance"] - 0.02) < 1e-3
    scaled = spatial_relations([v * k + 3 for v in h], [v * k + 3 for v in o])
    for key, value in r.items():
        if isinstance(value, float):
            assert abs(scaled[key] - value) <= 1e-2 * max(1.0, abs(value))  # 3 significant digits
        elif not (key == "contact" and abs(r["distance"] - 0.02) < 1e-3):  # may flip at the tolerance
            assert scaled[key] == value  # integer boxes: exact arithmetic, the same decisions


def _shares_area(h, o) -> bool:
    return min(h[2], o[2]) > max(h[0], o[0]) and min(h[3], o[3]) > max(h[1], o[1])


def test_relations_agree_with_the_synthetic_rules():
    # classify_relation's hold / kick / look_at / far are expressible in the measured relations
    person = (40, 24, 64, 72)
    assert classify_relation(person, (64, 40, 80, 56)) == "hold"
    r = spatial_relations(person, (64, 40, 80, 56))
    assert r["contact"] and 0.4 <= r["vertical_position"] <= 0.75
    assert classify_relation(person, (64, 56, 80, 72)) == "kick"
    assert spatial_relations(person, (64, 56, 80, 72))["bottom_offset"] == 0.0


# ----------------------------------------------------------------- image operations
def _gradient(width: int = 100, height: int = 80) -> Image.Image:
    x = np.arange(width, dtype=np.uint8)[None, :].repeat(height, 0)
    return Image.fromarray(np.stack([x, x, x], axis=-1))


def test_crop_zooms_and_clamps():
    image = _gradient()
    view, region = crop(image, (10, 20, 30, 40), scale=2.0, margin=0.0)
    assert view.size == (40, 40) and region == (10.0, 20.0, 30.0, 40.0)
    assert np.asarray(view)[0, 0, 0] <= 11 and np.asarray(view)[0, -1, 0] >= 28  # the crop shows columns 10..29
    view, region = crop(image, (-20, -5, 15.5, 10.2), scale=1.0, margin=0.1)
    assert region == (0.0, 0.0, 20.0, 12.0) and view.size == (20, 12)
    big, _ = crop(Image.new("RGB", (2000, 1000)), (0, 0, 2000, 1000), scale=2.0)
    assert max(big.size) == MAX_OUTPUT_SIDE
    tiny, _ = crop(image, (5, 5, 6, 6), scale=1.0, margin=0.0)
    assert tiny.size == (8, 8)
    for bad, message in [((5, 5, 5, 9), "x1 < x2"), ((200, 0, 300, 10), "outside"), ((0, 0, float("inf"), 1), "finite")]:
        with pytest.raises(ValueError, match=message):
            crop(image, bad)
    with pytest.raises(ValueError, match="scale"):
        crop(image, (0, 0, 5, 5), scale=0)


def test_imagine_pad_and_mirror():
    image = _gradient(40, 20)
    pad = imagine(image, "pad", "all", 0.25)
    assert pad.image.size == (60, 30) and pad.offset == (10, 5)
    pixels = np.asarray(pad.image)
    assert (pixels[5:25, 10:50] == np.asarray(image)).all()
    assert (pixels[0, 0] == np.round(np.asarray(image).reshape(-1, 3).mean(0))).all()
    mirror = np.asarray(imagine(image, "mirror", "left", 0.5).image)
    assert mirror.shape == (20, 60, 3) and (mirror[:, :20, 0] == np.asarray(image)[:, :20, 0][:, ::-1]).all()
    assert "made up" in pad.note and "(10, 5)" in pad.note
    for kwargs, message in [({"mode": "outpaint"}, "mode"), ({"side": "up"}, "side"), ({"amount": 0}, "amount")]:
        with pytest.raises(ValueError, match=message):
            imagine(image, **{"mode": "pad", "side": "all", "amount": 0.5, **kwargs})
    assert PlainImagineBackend()(image, "mirror", "bottom", 1.0, "a dog").image.size == (40, 40)
