"""The ``spatial_relations`` tool: pure geometry between one human box and one object box.

OV-HOI / ImagineAgent (arXiv 2602.11499) gives its agent a spatial-analysis tool whose output the
model reads before choosing verbs, and rewards answers whose verbs agree with it. The paper does
not publish the tool's outputs, so these are ours. Every length is measured in *person heights*
``H`` (the human box's height), so the numbers mean the same at any image size or zoom:

* ``distance`` — the gap between the two boxes (0 when they touch or overlap), ``max(gap_x,
  gap_y, 0) / H`` where ``gap_x`` is the empty horizontal space between them (negative when they
  share columns);
* ``center_distance`` — distance between the box centres, ``/ H``;
* ``position`` — where the object is relative to the person: ``overlapping`` when the boxes share
  area, else ``left`` / ``right`` (the horizontal gap is the larger) or ``above`` / ``below``;
* ``horizontal_offset`` — object centre x minus person centre x, ``/ H`` (positive: right);
* ``vertical_position`` — object centre y below the person's top, ``/ H`` (0 at the top of the
  head, 1 at the feet, negative above the head);
* ``bottom_offset`` — object bottom minus person bottom, ``/ H`` (0: level with the feet);
* ``iou`` — intersection over union;
* ``object_inside_human`` / ``human_inside_object`` — share of one box's area inside the other
  (containment);
* ``contact`` — the boxes touch or overlap, up to ``contact_tolerance * H`` of empty space;
* ``size_ratio`` — object area / human area.

Boxes are xyxy in any one frame (the tools pass original pixels); only ratios are returned,
rounded to three significant digits.

>>> r = spatial_relations([40, 40, 64, 88], [64, 64, 80, 80])   # touches the side at hand height
>>> r["position"], r["contact"], r["distance"], r["vertical_position"], r["size_ratio"]
('right', True, 0.0, 0.667, 0.222)
>>> spatial_relations([40, 40, 64, 88], [88, 88, 104, 104])["position"]
'right'
>>> spatial_relations([40, 40, 64, 88], [40, 20, 64, 40])["position"]
'above'
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_CONTACT_TOLERANCE = 0.02
"""Empty space, in person heights, that still counts as contact (one pixel of a 50-pixel person)."""
SIGNIFICANT_DIGITS = 3
"""Rounding of the returned ratios (the tool's text goes to a model; three digits are plenty)."""
POSITIONS = ("left", "right", "above", "below", "overlapping")


def spatial_relations(
    human_box: Sequence[float], object_box: Sequence[float], contact_tolerance: float = DEFAULT_CONTACT_TOLERANCE
) -> dict:
    """The geometric relations of ``object_box`` to ``human_box`` (see the module docstring).

    Args:
        human_box: ``[x1, y1, x2, y2]`` of the person.
        object_box: ``[x1, y1, x2, y2]`` of the object.
        contact_tolerance: largest gap, in person heights, that still counts as contact.

    Returns:
        A JSON-ready dict: ``distance``, ``center_distance``, ``position``,
        ``horizontal_offset``, ``vertical_position``, ``bottom_offset``, ``iou``,
        ``object_inside_human``, ``human_inside_object``, ``contact``, ``size_ratio``.

    Raises:
        ValueError: a box is not four finite numbers with ``x1 < x2`` and ``y1 < y2``.

    >>> r = spatial_relations([0, 0, 10, 20], [0, 10, 10, 20])
    >>> r["position"], r["iou"], r["object_inside_human"], r["human_inside_object"]
    ('overlapping', 0.5, 1.0, 0.5)
    """
    h = _checked_box(human_box, "human_box")
    o = _checked_box(object_box, "object_box")
    height = h[3] - h[1]
    gap_x = max(o[0] - h[2], h[0] - o[2])  # > 0: empty columns between the boxes
    gap_y = max(o[1] - h[3], h[1] - o[3])
    inter_w = min(h[2], o[2]) - max(h[0], o[0])  # shared extent along each axis when positive
    inter_h = min(h[3], o[3]) - max(h[1], o[1])
    inter = max(inter_w, 0.0) * max(inter_h, 0.0)
    area_h = (h[2] - h[0]) * (h[3] - h[1])
    area_o = (o[2] - o[0]) * (o[3] - o[1])
    hc = ((h[0] + h[2]) / 2, (h[1] + h[3]) / 2)
    oc = ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2)
    gap = max(gap_x, gap_y, 0.0)
    relations = {
        "distance": gap / height,
        "center_distance": math.hypot(oc[0] - hc[0], oc[1] - hc[1]) / height,
        "position": _position(inter, gap_x, gap_y, oc, hc),
        "horizontal_offset": (oc[0] - hc[0]) / height,
        "vertical_position": (oc[1] - h[1]) / height,
        "bottom_offset": (o[3] - h[3]) / height,
        "iou": inter / (area_h + area_o - inter),
        "object_inside_human": inter / area_o,
        "human_inside_object": inter / area_h,
        "contact": bool(gap <= contact_tolerance * height),
        "size_ratio": area_o / area_h,
    }
    return {k: _rounded(v) if isinstance(v, float) else v for k, v in relations.items()}


def _rounded(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits (no negative zero)."""
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}") + 0.0


def _position(inter: float, gap_x: float, gap_y: float, oc: tuple[float, float], hc: tuple[float, float]) -> str:
    if inter > 0:
        return "overlapping"
    if gap_x >= gap_y:
        return "right" if oc[0] >= hc[0] else "left"
    return "below" if oc[1] >= hc[1] else "above"


def _checked_box(box: Sequence[float], name: str) -> np.ndarray:
    try:
        arr = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be four numbers [x1, y1, x2, y2], found {box!r:.80}") from None
    if arr.shape != (4,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be four finite numbers [x1, y1, x2, y2], found {box!r:.80}")
    if not (arr[0] < arr[2] and arr[1] < arr[3]):
        raise ValueError(f"{name} must have x1 < x2 and y1 < y2, found {arr.tolist()}")
    return arr
