"""The scene sampler of the synthetic HOI world: one unambiguous scene whose pairs use only the
allowed classes, drawn from a seeded numpy generator (pure numpy; the rules it checks are
:mod:`hoi_r1.synthetic.relations`, the scene it returns :class:`~hoi_r1.synthetic.scene.Scene`).

Objects are placed where the planned relation comes out (:func:`sample_scene`); a proposal with
an ambiguous pair, an overlap beyond the occlusion knobs, or a third box in the gap between a
person and what they look at is drawn again. Every relation found is annotated; an object
related to nobody is annotated ``no_interaction`` with every person.

>>> from hoi_r1.synthetic.scene import SyntheticWorldConfig
>>> scene = sample_scene(np.random.default_rng(0), SyntheticWorldConfig(), allowed=range(22))
>>> 1 <= len(scene.people) <= 2 and 1 <= len(scene.objects) <= 2 and len(scene.pairs) >= 1
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hoi_r1.synthetic.relations import AMBIGUOUS, FAR, classify_relation, overlap_share
from hoi_r1.synthetic.scene import (
    OBJECTS,
    VERBS,
    Background,
    Box,
    Entity,
    Scene,
    SyntheticWorldConfig,
    synthetic_vocabulary,
)

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
