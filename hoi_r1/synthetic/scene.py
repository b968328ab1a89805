"""The scene model of the synthetic HOI world: its knobs (:class:`SyntheticWorldConfig`), what a
scene holds, and its label space (pure Python; the relation rules that decide a pair's verb:
:mod:`hoi_r1.synthetic.relations`; the sampler that draws unambiguous scenes:
:mod:`hoi_r1.synthetic.scene_sampler`; drawing: :mod:`hoi_r1.synthetic.render`; the dataset
writer: :mod:`hoi_r1.synthetic.world`).

A scene holds people (blue stick figures) and objects (ball, bicycle, box, cup, dog, kite; each
its own colour and shape), 1–2 of each by default, on a flat, noisy or gradient background. The
verb of a (person, object) pair is a function of the two boxes alone. Valid (verb, object)
classes differ per object, as in HICO-DET; three of them form the ``unseen_composition``
zero-shot split (their verb and object both occur in other classes).

>>> v = synthetic_vocabulary()
>>> v.objects[:3], len(v.verbs), v.num_classes, v.coco91_ids[:3]
(('person', 'ball', 'bicycle'), 6, 22, (1, 2, 3))
>>> [v.interaction_name(i) for i in v.zero_shot["unseen_composition"]]
['kick box', 'look_at cup', 'ride dog']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

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
