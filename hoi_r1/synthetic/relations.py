"""The relation rules of the synthetic HOI world: the verb a picture shows between a person box
and an object box, or that they are far apart, or that the picture is ambiguous (pure Python;
the sampler, :mod:`hoi_r1.synthetic.scene_sampler`, keeps only scenes without an ambiguous pair).

The verb of a (person, object) pair is a function of the two boxes alone
(:func:`classify_relation`), with ``H`` the person's height and ``(cx, cy)`` the object's centre:

* ``ride`` — the person's feet lie in the object's upper 60 % and the person's centre line
  crosses the object (the person is drawn over it);
* ``carry`` — the object rests on top of the head: its bottom touches the person's top and
  it straddles the person's centre line;
* ``kick`` — the object touches the person's side and its bottom is level with the feet
  (within ``H/12``);
* ``hold`` — the object touches the person's side at hand height (``cy`` in ``[0.4H, 0.75H]``
  below the top) and its bottom is clearly off the ground (``>= H/6`` above the feet);
* ``look_at`` — the object is beside the person at head height (``cy`` in ``[-H/8, H/3]``
  from the top), separated by a visible gap of ``H/6`` to ``3H/4``;
* far — the boxes are at least ``H/3`` apart (horizontally or vertically) and the object is not
  near the look zone (head height within a gap of ``H``).

Anything else (touching in another way, near but not far, borderline heights or gaps) is
*ambiguous*, and a scene containing an ambiguous pair is resampled, as is a scene where a third
box stands in the gap between a person and what they look at — so a verb never depends on
hidden state.

>>> classify_relation((40, 24, 64, 72), (64, 40, 80, 56))   # touches the side at hand height
'hold'
>>> classify_relation((40, 24, 64, 72), (64, 56, 80, 72))   # touches the side at the feet
'kick'
>>> classify_relation((40, 24, 64, 72), (88, 88, 104, 104))
'far'
"""

from __future__ import annotations

from typing import Sequence

from hoi_r1.synthetic.scene import Box

FAR, AMBIGUOUS = "far", "ambiguous"


def classify_relation(person: Sequence[float], obj: Sequence[float]) -> str:
    """The relation a picture shows between a person box and an object box: a verb name,
    :data:`FAR` or :data:`AMBIGUOUS` (rules in the module docstring).

    >>> classify_relation((40, 40, 64, 88), (32, 80, 72, 104))   # feet on the object's top
    'ride'
    >>> classify_relation((40, 40, 64, 88), (40, 24, 56, 40))    # on the head
    'carry'
    >>> classify_relation((40, 40, 64, 88), (80, 40, 96, 56))    # head height, 16 px gap
    'look_at'
    >>> classify_relation((40, 40, 64, 88), (64, 24, 80, 40))    # touches a corner only
    'ambiguous'
    """
    px1, py1, px2, py2 = (float(v) for v in person)
    ox1, oy1, ox2, oy2 = (float(v) for v in obj)
    h = py2 - py1
    pcx, ocx, ocy = (px1 + px2) / 2, (ox1 + ox2) / 2, (oy1 + oy2) / 2
    gap_x = max(ox1 - px2, px1 - ox2)  # negative: the boxes share columns
    gap_y = max(oy1 - py2, py1 - oy2)
    rel_y = (ocy - py1) / h  # object centre below the person's top, in person heights
    if gap_x < 0 and gap_y < 0 and py1 < oy1 < py2 <= oy1 + 0.6 * (oy2 - oy1) and ox1 < pcx < ox2:
        return "ride"
    if gap_x <= 0 and gap_y <= 0:  # the boxes touch or overlap
        beside = gap_y < 0 and -h / 6 <= gap_x and not px1 <= ocx <= px2
        if beside and abs(oy2 - py2) <= h / 12:
            return "kick"
        if beside and oy2 <= py2 - h / 6 and 0.4 <= rel_y <= 0.75:
            return "hold"
        if gap_x < 0 and -h / 12 <= gap_y and ocy < py1 and ox1 < pcx < ox2:
            return "carry"
        return AMBIGUOUS
    if h / 6 <= gap_x <= 0.75 * h and -1 / 8 <= rel_y <= 1 / 3:
        return "look_at"
    near_look_zone = -1 / 4 <= rel_y <= 11 / 24 and gap_x <= h
    if max(gap_x, gap_y) >= h / 3 and not near_look_zone:
        return FAR
    return AMBIGUOUS


def overlap_share(a: Box, b: Box) -> float:
    """Largest share of either box that the other covers (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
