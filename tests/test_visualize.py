"""Drawn pairs: enlarged images, numbered tags that never cover each other, one legend."""

from __future__ import annotations

import itertools

from PIL import Image

from hoi_r1.answer import Triplet
from hoi_r1.visualize import GT_HUMAN, MIN_SIDE, PANEL_WIDTH, PRED_HUMAN, draw_pairs, draw_record, place_tag
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary.open(["ride", "hold"], ["person", "bicycle"], [("ride", "bicycle"), ("hold", "bicycle")])


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_tags_of_pairs_sharing_a_corner_never_overlap_and_stay_inside():
    for corner in [(0, 0), (300, 0), (0, 300), (300, 300), (150, 150)]:
        placed = []
        for _ in range(12):
            placed.append(place_tag(18, 16, (*corner, corner[0] + 10, corner[1] + 10), placed, 320, 320))
        assert not any(_overlap(a, b) for a, b in itertools.combinations(placed, 2)), corner
        assert all(0 <= r[0] and r[2] <= 320 and 0 <= r[1] and r[3] <= 320 for r in placed), corner


def test_small_images_are_enlarged_by_a_whole_factor_with_the_panel_beside():
    image = Image.new("RGB", (112, 80), (200, 200, 200))
    record = {"hois": [{"human_box": [10, 10, 40, 70], "object_box": [30, 40, 60, 75], "object": "bicycle",
                        "verb": v, "score": 0.5} for v in ("ride", "hold")]}
    drawn = draw_record(image, record)
    assert drawn.size == (112 * 4 + PANEL_WIDTH, 80 * 4)  # 4 x 80 = 320 >= MIN_SIDE
    assert drawn.getpixel((4 * 10, 4 * 40)) == PRED_HUMAN  # the human box's left edge, scaled
    assert min(drawn.size[0] - PANEL_WIDTH, drawn.size[1]) >= MIN_SIDE


def test_ground_truth_and_predictions_have_their_own_colours():
    from hoi_r1.sample import HOISample

    truth = HOISample(image_id=0, file_name="a.png", image_path="", width=64, height=64,
                      human_boxes=[[2, 2, 30, 60]], object_boxes=[[20, 30, 60, 62]], object_labels=[1],
                      pairs=[[0, 0, 0, 0]])
    guess = Triplet((34, 4, 60, 20), (40, 10, 62, 30), 1, (1,), 0.8)
    drawn = draw_pairs(Image.new("RGB", (64, 64)), [guess], VOCAB, ground_truth=truth)
    scale = 5
    assert drawn.getpixel((2 * scale + 1, 40 * scale)) == GT_HUMAN
    assert drawn.getpixel((34 * scale, 12 * scale)) == PRED_HUMAN
