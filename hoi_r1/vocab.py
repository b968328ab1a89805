"""The label space of an HOI dataset: verbs, objects, valid (verb, object) classes, rare
classes and zero-shot splits.

An HOI class ("interaction") is a valid ``(verb id, object id)`` pair; its id is its position
in :attr:`HOIVocabulary.interactions`. For HICO-DET the project carries the official facts in
``hoi_r1/resources/hico_det.json``: 117 verbs (alphabetical), 80 objects (HICO alphabetical
order), 600 classes in the official ``list_action`` order, the 138 rare classes (fewer than 10
training pairs) and the unseen lists of the four zero-shot settings used by GEN-VLKT and HOICLIP
(``rare_first``, ``non_rare_first``, ``unseen_object``, ``unseen_verb``; 0-based class ids).

>>> v = HOIVocabulary.hico_det()
>>> len(v.verbs), len(v.objects), len(v.interactions), len(v.rare)
(117, 80, 600, 138)
>>> v.interaction_name(0)
'board airplane'
>>> v.interaction_id(v.verbs.index("ride"), v.objects.index("bicycle"))
18
>>> len(v.zero_shot["unseen_verb"])
84
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Iterable, Literal, Mapping

ZeroShotSetting = Literal["rare_first", "non_rare_first", "unseen_object", "unseen_verb"]
ZERO_SHOT_SETTINGS: tuple[str, ...] = ("rare_first", "non_rare_first", "unseen_object", "unseen_verb")
RARE_THRESHOLD = 10
"""A class with fewer training pairs than this is rare (HICO-DET's definition)."""


@dataclass(frozen=True)
class HOIVocabulary:
    """Verbs, objects and valid interaction classes of a dataset.

    Args:
        name: dataset name (``hico_det``, ``swig_hoi``, ``synthetic``, or any user name).
        verbs: verb names; a verb's id is its position.
        objects: object names; an object's id is its position. Humans are the object ``person``.
        interactions: ``(verb id, object id)`` per class; a class id is its position.
        rare: ids of rare classes.
        zero_shot: unseen class ids per zero-shot setting name.
        coco91_ids: per object, its COCO-91 category id (PPDM/QPIC JSON files); empty when the
            dataset has none, in which case the files use object ids directly.
        unevaluated: class ids that are not evaluated (SWIG-HOI's ``evaluation == 0``).
        frequency: per class, a frequency bucket (SWIG-HOI: 0 unseen, 1 rare, 2 non-rare); empty
            when the dataset does not define one.
    """

    name: str
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    interactions: tuple[tuple[int, int], ...]
    rare: frozenset[int] = frozenset()
    zero_shot: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    coco91_ids: tuple[int, ...] = ()
    unevaluated: frozenset[int] = frozenset()
    frequency: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for i, (v, o) in enumerate(self.interactions):
            if not (0 <= v < len(self.verbs) and 0 <= o < len(self.objects)):
                raise ValueError(f"vocabulary {self.name!r}: interaction {i} = ({v}, {o}) is out of range")
        if len(set(self.interactions)) != len(self.interactions):
            raise ValueError(f"vocabulary {self.name!r}: interactions repeat a (verb, object) pair")
        bad = [i for i in [*self.rare, *self.unevaluated] if not 0 <= i < len(self.interactions)]
        bad += [i for ids in self.zero_shot.values() for i in ids if not 0 <= i < len(self.interactions)]
        if bad:
            raise ValueError(f"vocabulary {self.name!r}: class ids {bad[:5]} are out of range")

    # ----------------------------------------------------------------- construction
    @classmethod
    def hico_det(cls) -> "HOIVocabulary":
        """The official HICO-DET vocabulary carried by the project."""
        text = resources.files("hoi_r1.resources").joinpath("hico_det.json").read_text()
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_json(cls, path: str | Path) -> "HOIVocabulary":
        """Read a vocabulary written by :meth:`to_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"vocabulary file {path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"vocabulary file {path}: {e}") from None

    @classmethod
    def from_dict(cls, data: Mapping) -> "HOIVocabulary":
        """Build from the JSON layout of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            verbs=tuple(data["verbs"]),
            objects=tuple(data["objects"]),
            interactions=tuple((int(v), int(o)) for v, o in data["interactions"]),
            rare=frozenset(int(i) for i in data.get("rare", ())),
            zero_shot={k: tuple(int(i) for i in ids) for k, ids in data.get("zero_shot", {}).items()},
            coco91_ids=tuple(int(i) for i in data.get("coco91_ids", ())),
            unevaluated=frozenset(int(i) for i in data.get("unevaluated", ())),
            frequency=tuple(int(i) for i in data.get("frequency", ())),
        )

    @classmethod
    def open(
        cls, verbs: Iterable[str], objects: Iterable[str], interactions: Iterable[tuple[str, str]] | None = None
    ) -> "HOIVocabulary":
        """An open vocabulary from names: every (verb, object) combination unless
        ``interactions`` lists the allowed ``(verb name, object name)`` pairs.

        >>> v = HOIVocabulary.open(["hold", "ride"], ["person", "bicycle"], [("ride", "bicycle")])
        >>> v.interactions
        ((1, 1),)
        """
        verbs, objects = tuple(verbs), tuple(objects)
        if interactions is None:
            pairs = tuple((v, o) for o in range(len(objects)) for v in range(len(verbs)))
        else:
            pairs = tuple((verbs.index(v), objects.index(o)) for v, o in interactions)
        return cls(name="open", verbs=verbs, objects=objects, interactions=pairs)

    def to_dict(self) -> dict:
        """JSON-ready layout (read back by :meth:`from_dict`)."""
        out = {
            "name": self.name,
            "verbs": list(self.verbs),
            "objects": list(self.objects),
            "interactions": [list(p) for p in self.interactions],
            "rare": sorted(self.rare),
            "zero_shot": {k: sorted(v) for k, v in self.zero_shot.items()},
        }
        if self.coco91_ids:
            out["coco91_ids"] = list(self.coco91_ids)
        if self.unevaluated:
            out["unevaluated"] = sorted(self.unevaluated)
        if self.frequency:
            out["frequency"] = list(self.frequency)
        return out

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    # ----------------------------------------------------------------- look-ups
    @cached_property
    def _interaction_index(self) -> dict[tuple[int, int], int]:
        return {pair: i for i, pair in enumerate(self.interactions)}

    @cached_property
    def _verb_index(self) -> dict[str, int]:
        return {_norm(n): i for i, n in enumerate(self.verbs)}

    @cached_property
    def _object_index(self) -> dict[str, int]:
        return {_norm(n): i for i, n in enumerate(self.objects)}

    @property
    def num_classes(self) -> int:
        return len(self.interactions)

    @property
    def person(self) -> int | None:
        """Object id of ``person`` (humans as objects), if the vocabulary has one."""
        return self._object_index.get("person")

    def interaction_id(self, verb: int, obj: int) -> int | None:
        """Class id of ``(verb, object)``, or ``None`` if the pair is not a valid class."""
        return self._interaction_index.get((verb, obj))

    def verb_id(self, name: str) -> int | None:
        """Verb id by name; spaces, underscores and case do not matter."""
        return self._verb_index.get(_norm(name))

    def object_id(self, name: str) -> int | None:
        """Object id by name; spaces, underscores and case do not matter."""
        return self._object_index.get(_norm(name))

    def interaction_name(self, hoi: int) -> str:
        v, o = self.interactions[hoi]
        return f"{self.verbs[v]} {self.objects[o]}"

    def verbs_for_object(self, obj: int) -> list[int]:
        """Verb ids that form a valid class with object ``obj``, in class order."""
        return [v for v, o in self.interactions if o == obj]

    def objects_with_interactions(self) -> list[int]:
        """Object ids that take part in at least one class, in id order."""
        return sorted({o for _, o in self.interactions})

    # ----------------------------------------------------------------- derived splits
    def non_rare(self) -> frozenset[int]:
        return frozenset(range(self.num_classes)) - self.rare

    def with_rare_from_counts(self, pair_counts: Mapping[int, int], threshold: int = RARE_THRESHOLD) -> "HOIVocabulary":
        """A copy whose rare set is every class with fewer than ``threshold`` training pairs
        (classes absent from ``pair_counts`` count 0)."""
        rare = frozenset(i for i in range(self.num_classes) if pair_counts.get(i, 0) < threshold)
        return replace(self, rare=rare)

    def unseen(self, setting: str) -> tuple[int, ...]:
        """Unseen class ids of a zero-shot setting."""
        try:
            return self.zero_shot[setting]
        except KeyError:
            raise KeyError(
                f"vocabulary {self.name!r} has no zero-shot setting {setting!r}; it has {sorted(self.zero_shot)}"
            ) from None


def count_pairs(hoi_ids: Iterable[int]) -> Counter:
    """Pairs per class id (used to compute the rare split from a training set)."""
    return Counter(int(i) for i in hoi_ids)


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())
