"""The scene model of the synthetic HOI world: its knobs (:class:`SyntheticWorldConfig`), what a
scene holds, the relation rules that decide its verbs, and the sampler that draws unambiguous
scenes (pure numpy; drawing lives in :mod:`hoi_r1.synthetic.render`, the dataset writer in
:mod:`hoi_r1.synthetic.world`).

A scene holds people (blue stick figures) and objects (ball, bicycle, box, cup, dog, kite; each
its own colour and shape), 1–2 of each by default, on a flat, noisy or gradient background. The verb of a
(person, object) pair is a function of the two boxes alone (:func:`classify_relation`), with
``H`` the person's height and ``(cx, cy)`` the object's centre:

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
hidden state. Every relation found is annotated; an object related to nobody is annotated
``no_interaction`` with every person (it is far from all of them). Valid (verb, object)
classes differ per object, as in HICO-DET; three of them form the ``unseen_composition``
zero-shot split (their verb and object both occur in other classes).

>>> v = synthetic_vocabulary()
>>> v.objects[:3], len(v.verbs), v.num_classes, v.coco91_ids[:3]
(('person', 'ball', 'bicycle'), 6, 22, (1, 2, 3))
>>> [v.interaction_name(i) for i in v.zero_shot["unseen_composition"]]
['kick box', 'look_at cup', 'ride dog']
>>> classify_relation((40, 24, 64, 72), (64, 40, 80, 56))   # touches the side at hand height
'hold'
>>> classify_relation((40, 24, 64, 72), (64, 56, 80, 72))   # touches the side at the feet
'kick'
>>> classify_relation((40, 24, 64, 72), (88, 88, 104, 104))
'far'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np

from hoi_r1.vocab import HOIVocabulary

VERBS = ("carry", "hold", "kick", "look_at", "no_interaction", "ride")
OBJECTS = ("person", "ball", "bicycle", "box", "cup", "dog", "kite")
"""Object names; ``person`` first (COCO id 1), the others get COCO-like ids 2, 3, ..."""
VALID_VERBS: dict[str, tuple[str, ...]] = {
    "ball": ("carry", "hold", "kick", "look_at", "no_interaction"),
    "bicycle": ("look_at", "no_interaction", "ride"),
    "box": ("carry", "hold", "kick", "no_interaction"),
    "cup": ("hold", "look_at", "no_interaction"),
    "dog": ("carry", "look_at", "no_interaction", "ride"),
    "kite": ("hold", "look_at", "no_interaction"),
}
UNSEEN_COMPOSITION = (("kick", "box"), ("look_at", "cup"), ("ride", "dog"))
SIZES_AT_112: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "person": ((20, 28), (44, 56)),
    "ball": ((12, 18), (12, 18)),
    "bicycle": ((36, 44), (22, 28)),
    "box": ((16, 24), (16, 24)),
    "cup": ((12, 16), (14, 18)),
    "dog": ((28, 36), (18, 24)),
    "kite": ((16, 20), (20, 26)),
}
"""(width range, height range) in pixels of a 112-pixel image; scaled with the image size."""
FAR, AMBIGUOUS = "far", "ambiguous"
BackgroundStyle = Literal["flat", "noise", "gradient", "ramp"]
Box = tuple[int, int, int, int]


# --------------------------------------------------------------------- the knobs
@dataclass(frozen=True)
class SyntheticWorldConfig:
    """Knobs of the synthetic world (defaults: a task a tiny model learns on a CPU).

    Args:
        image_size: image width in pixels (and height unless ``image_height`` is set).
        image_height: image height in pixels; ``None`` for square images.
        min_people: fewest people per image (at least 1).
        max_people: most people per image.
        min_objects: fewest objects per image (at least 1).
        max_objects: most objects per image.
        grid: every box coordinate is a multiple of this many pixels; 1 turns snapping off.
        backgrounds: background styles drawn from uniformly.
        occlusion: let boxes overlap mildly (objects and people, or an object touching a
            person's side by a few pixels); when off, only a ridden object is overlapped (by its
            rider).
        max_occlusion: with ``occlusion``, the largest share of a box another box may cover.
        num_train: training images.
        num_test: test images.
        num_val: validation images (``val.json``, for choosing settings; never the test scenes).
        seed: the random seed; the same seed writes byte-identical files.
        zero_shot_holdout: keep the ``unseen_composition`` classes out of the training images.
        image_format: ``png`` (lossless, exact colours) or ``jpg``.
        max_attempts: scene proposals before giving up on one image (raise for crowded knobs).
    """

    image_size: int = 112
    image_height: int | None = None
    min_people: int = 1
    max_people: int = 2
    min_objects: int = 1
    max_objects: int = 2
    grid: int = 8
    backgrounds: tuple[BackgroundStyle, ...] = ("flat", "noise", "gradient")
    occlusion: bool = True
    max_occlusion: float = 0.25
    num_train: int = 2000
    num_test: int = 200
    num_val: int = 64
    seed: int = 0
    zero_shot_holdout: bool = False
    image_format: Literal["png", "jpg"] = "png"
    max_attempts: int = 500

    def __post_init__(self) -> None:
        problems = []
        if min(self.width, self.height) < 56:
            problems.append(f"image size {self.width}x{self.height} is below 56 pixels")
        if not 1 <= self.min_people <= self.max_people:
            problems.append(f"need 1 <= min_people <= max_people, found {self.min_people}, {self.max_people}")
        if not 1 <= self.min_objects <= self.max_objects:
            problems.append(f"need 1 <= min_objects <= max_objects, found {self.min_objects}, {self.max_objects}")
        if self.grid < 1 or self.grid > min(self.width, self.height) // 8:
            problems.append(f"grid must be in [1, image size / 8], found {self.grid}")
        unknown = set(self.backgrounds) - {"flat", "noise", "gradient", "ramp"}
        if not self.backgrounds or unknown:
            problems.append(f"backgrounds must be a non-empty subset of (flat, noise, gradient, ramp): {self.backgrounds}")
        if not 0.0 <= self.max_occlusion < 1.0:
            problems.append(f"max_occlusion must be in [0, 1), found {self.max_occlusion}")
        if min(self.num_train, self.num_test, self.num_val) < 0 or self.max_attempts < 1:
            problems.append("num_train, num_test, num_val must be >= 0 and max_attempts >= 1")
        if self.image_format not in ("png", "jpg"):
            problems.append(f"image_format must be png or jpg, found {self.image_format!r}")
        if problems:
            raise ValueError("SyntheticWorldConfig: " + "; ".join(problems))

    @property
    def width(self) -> int:
        return self.image_size

    @property
    def height(self) -> int:
        return self.image_height if self.image_height is not None else self.image_size


@dataclass(frozen=True)
class Entity:
    """A drawn person or object: object id, box (xyxy, the exact drawn extent in pixels; the
    shape covers columns ``x1..x2-1`` and rows ``y1..y2-1``) and left-right mirroring."""

    label: int
    box: Box
    mirrored: bool = False


@dataclass(frozen=True)
class Background:
    """How the background is painted: style, two colours (``gradient`` blends them along
    ``angle`` radians), and the seed of the ``noise`` texture."""

    style: str
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    angle: float = 0.0
    noise_seed: int = 0


@dataclass(frozen=True)
class Scene:
    """One image's content: people, objects, annotated ``(person, object, verb id)`` pairs."""

    width: int
    height: int
    people: tuple[Entity, ...]
    objects: tuple[Entity, ...]
    pairs: tuple[tuple[int, int, int], ...]
    background: Background = field(default_factory=lambda: Background("flat", (230, 230, 230), (230, 230, 230)))


# --------------------------------------------------------------------- vocabulary
def synthetic_vocabulary(pair_counts: dict[int, int] | None = None) -> HOIVocabulary:
    """The synthetic label space: classes ordered by object, then verb (HICO-DET's order);
    ``rare`` from ``pair_counts`` (training pairs per class) when given."""
    vocab = _base_vocabulary()
    return vocab.with_rare_from_counts(pair_counts) if pair_counts is not None else vocab


@lru_cache(maxsize=1)
def _base_vocabulary() -> HOIVocabulary:
    interactions = tuple(
        (VERBS.index(verb), OBJECTS.index(obj)) for obj in OBJECTS[1:] for verb in sorted(VALID_VERBS[obj])
    )
    index = {pair: i for i, pair in enumerate(interactions)}
    unseen = tuple(sorted(index[(VERBS.index(v), OBJECTS.index(o))] for v, o in UNSEEN_COMPOSITION))
    return HOIVocabulary(
        name="synthetic",
        verbs=VERBS,
        objects=OBJECTS,
        interactions=interactions,
        zero_shot={"unseen_composition": unseen},
        coco91_ids=tuple(range(1, len(OBJECTS) + 1)),
    )


# --------------------------------------------------------------------- the relation rules
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


# --------------------------------------------------------------------- scene sampling
def sample_scene(rng: np.random.Generator, config: SyntheticWorldConfig, allowed: Sequence[int]) -> Scene:
    """Draw one unambiguous scene whose pairs use only the class ids in ``allowed``.

    The numbers of people and objects are drawn first (uniformly in their ranges), then people
    are placed, then each object is planned as a class (uniform over ``allowed``) and placed
    relative to a random person; a placement is kept only when the planned relation comes out,
    every other (person, object) pair is a valid verb or far, and overlaps respect the
    occlusion knobs. A failed object retries its placement, then the whole scene is proposed
    again; ``RuntimeError`` after ``config.max_attempts`` proposals.
    """
    vocab = synthetic_vocabulary()
    allowed_set = set(allowed)
    num_people = int(rng.integers(config.min_people, config.max_people + 1))
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    for _ in range(config.max_attempts):
        scene = _propose(rng, config, vocab, sorted(allowed_set), allowed_set, num_people, num_objects)
        if scene is not None:
            return scene
    raise RuntimeError(
        f"no valid synthetic scene after {config.max_attempts} attempts: the image is too small for "
        f"{config.max_people} people and {config.max_objects} objects; raise image_size or max_attempts"
    )


def _propose(rng, config, vocab, allowed_list, allowed_set, num_people, num_objects) -> Scene | None:
    width, height, grid = config.width, config.height, config.grid
    scale = min(width, height) / 112
    people: list[Box] = []
    for _ in range(num_people):
        for _ in range(20):
            pw, ph = _size(rng, "person", scale, grid)
            x1 = grid * int(rng.integers(0, (width - pw) // grid + 1))
            y1 = grid * int(rng.integers(0, (height - ph) // grid + 1))
            box = (x1, y1, x1 + pw, y1 + ph)
            if all(_may_overlap(box, p, config) for p in people):
                people.append(box)
                break
        else:
            return None
    people.sort(key=lambda b: (b[3], b[0]))  # farther (higher feet) first: nearer ones drawn on top
    objects: list[Entity] = []
    for _ in range(num_objects):
        verb, label = vocab.interactions[allowed_list[int(rng.integers(len(allowed_list)))]]
        for _ in range(20):
            anchor = people[int(rng.integers(len(people)))]
            box = _place(rng, VERBS[verb], OBJECTS[label], anchor, scale, width, height, grid)
            if box is None or not all(_may_overlap(box, o.box, config) for o in objects):
                continue
            relations = [classify_relation(p, box) for p in people]
            if not all(r == "ride" or _may_overlap(box, p, config) for p, r in zip(people, relations)):
                continue
            planned = FAR if VERBS[verb] == "no_interaction" else VERBS[verb]
            if relations[people.index(anchor)] == planned and all(
                r == FAR or vocab.interaction_id(VERBS.index(r), label) in allowed_set
                for r in relations
                if r != AMBIGUOUS
            ) and AMBIGUOUS not in relations:
                objects.append(Entity(label, box, bool(rng.integers(2))))
                break
        else:
            return None
    if not _sight_lines_clear(people, [o.box for o in objects]):
        return None
    return Scene(width, height, tuple(Entity(0, p) for p in people), tuple(objects),
                 _annotate(people, objects), _background(rng, config))


def _sight_lines_clear(people: list[Box], objects: list[Box]) -> bool:
    """No third box cuts the gap between a person and an object they look at (a blocked view
    would make ``look_at`` a guess)."""
    boxes = people + objects
    for p in people:
        for o in objects:
            if classify_relation(p, o) != "look_at":
                continue
            x1, x2 = (p[2], o[0]) if o[0] >= p[2] else (o[2], p[0])
            corridor = (x1, o[1], x2, o[3])
            if any(b is not p and b is not o and overlap_share(b, corridor) > 0 for b in boxes):
                return False
    return True


def _annotate(people: list[Box], objects: list[Entity]) -> tuple[tuple[int, int, int], ...]:
    """Every relation, plus ``no_interaction`` with everybody for an object related to nobody."""
    pairs = []
    for o, obj in enumerate(objects):
        relations = [classify_relation(p, obj.box) for p in people]
        if all(r == FAR for r in relations):
            pairs += [(h, o, VERBS.index("no_interaction")) for h in range(len(people))]
        else:
            pairs += [(h, o, VERBS.index(r)) for h, r in enumerate(relations) if r != FAR]
    return tuple(sorted(pairs))


def _size(rng, name: str, scale: float, grid: int) -> tuple[int, int]:
    (w0, w1), (h0, h1) = SIZES_AT_112[name]
    w = float(rng.uniform(w0, w1)) * scale
    h = w if name == "ball" else float(rng.uniform(h0, h1)) * scale
    return max(grid, _snap(w, grid)), max(grid, _snap(h, grid))


def _snap(value: float, grid: int) -> int:
    return int(round(value / grid)) * grid


def _place(rng, verb: str, name: str, person: Box, scale: float, width: int, height: int, grid: int) -> Box | None:
    """A box for an object meant to have relation ``verb`` with ``person`` (None if it leaves
    the image); the relation classifier has the final word."""
    ow, oh = _size(rng, name, scale, grid)
    px1, py1, px2, py2 = person
    ph, pcx = py2 - py1, (px1 + px2) / 2
    side = 1 if rng.integers(2) else -1
    beside_x = px2 if side > 0 else px1 - ow
    if verb == "hold":
        x, y = beside_x, py1 + 0.55 * ph - oh / 2
    elif verb == "kick":
        x, y = beside_x, py2 - oh
    elif verb == "carry":
        x, y = pcx - ow / 2 + rng.uniform(-0.3, 0.3) * ow, py1 - oh
    elif verb == "ride":
        x, y = pcx - ow / 2 + rng.uniform(-0.25, 0.25) * ow, py2 - 0.4 * oh
    elif verb == "look_at":
        gap = rng.uniform(ph / 6, 0.75 * ph)
        x = px2 + gap if side > 0 else px1 - gap - ow
        y = py1 + ph / 8 - oh / 2 + rng.uniform(-ph / 8, ph / 8)
    else:  # no_interaction: anywhere; the classifier checks it is far from everybody
        x, y = rng.uniform(0, width - ow), rng.uniform(0, height - oh)
    x1, y1 = _snap(x, grid), _snap(y, grid)
    if x1 < 0 or y1 < 0 or x1 + ow > width or y1 + oh > height:
        return None
    return (x1, y1, x1 + ow, y1 + oh)


def _may_overlap(a: Box, b: Box, config: SyntheticWorldConfig) -> bool:
    share = overlap_share(a, b)
    return share == 0.0 or (config.occlusion and share <= config.max_occlusion)


def _background(rng, config: SyntheticWorldConfig) -> Background:
    style = config.backgrounds[int(rng.integers(len(config.backgrounds)))]
    light = lambda: tuple(int(v) for v in np.clip(rng.integers(185, 246) + rng.integers(-12, 13, 3), 0, 255))
    return Background(style, light(), light(), float(rng.uniform(0, 2 * np.pi)), int(rng.integers(2**31)))
