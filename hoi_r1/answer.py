"""The answer format and its parser: model output read back into triplets.

Format (HOI-R1 compatible; docs/answer_format.md)::

    <think>free text</think><answer>[{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2],
    "object class": "bicycle", "verb class": ["ride", "sit on"]}]</answer>

One element per distinct (human, object) pair with all its verbs; boxes in the text frame of a
:class:`~hoi_r1.frames.Frame`. :func:`hoi_r1.answer_render.render_answer` writes a target in this
format, names with underscores replaced by spaces (HOI-R1's prompt lists ``sit on``,
``dining table``); the vocabulary look-up ignores case, spaces and underscores, so the parser
accepts both spellings. :func:`hoi_r1.metric_input.to_metric_preds` turns a parsed answer into
the metric's detections.

:func:`parse_answer` never raises and never evaluates text as code. It reads, in order: the
payload (between ``<answer>`` and ``</answer>``; after ``</think>`` when ``<answer>`` is missing;
the whole text when there are no tags; a missing ``</answer>`` marks the text truncated); then
the list in it with :func:`hoi_r1.lenient_json.read_json_list` (code fences, prose around,
trailing commas, single quotes, missing commas, a bare object, a list cut off mid-element —
complete elements are kept). ``verb class`` may be a list, a
comma-separated string, or a list of such strings. Work is bounded: the first
:data:`MAX_TEXT_CHARS` characters are read, at most :data:`MAX_ELEMENTS` elements and
:data:`MAX_VERBS` verb names per element; ``capped`` says when a limit was hit. Deep nesting
is caught as a decode error.

Element problems (:class:`ElementProblem`) are *fatal* (no triplet: ``not_an_object``,
``missing_key``, ``bad_box``, ``bad_label``, ``unknown_object``) or *flagged* (triplet kept:
``degenerate_box``, ``unknown_verb`` (the verb is dropped), ``invalid_pair`` (verb kept, no
metric row), ``no_verbs``). Triplets are scored with HOI-R1's ``rank`` scores on parsing; see
:mod:`hoi_r1.scores` for ``logprob`` and ``vote``.

>>> from hoi_r1.vocab import HOIVocabulary
>>> from hoi_r1.frames import Frame
>>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"])
>>> frame = Frame("absolute_original", (100, 80), (100, 80))
>>> p = parse_answer('<answer>[{"human": [1, 2, 30, 60], "object": [5, 40, 90, 79], '
...                  '"object class": "bicycle", "verb class": "ride, sit on",}]</answer>', vocab, frame)
>>> p.structure_ok, p.json_ok, p.repairs, p.triplets[0].verb_ids
(False, False, ('trailing_commas',), (0, 1))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hoi_r1.frames import Frame
from hoi_r1.lenient_json import read_json_list
from hoi_r1.vocab import HOIVocabulary

MAX_TEXT_CHARS = 100_000
"""Characters of a completion that are read; the rest is ignored (``capped``)."""
MAX_ELEMENTS = 300
"""Answer elements that are read (HICO-DET images have far fewer pairs)."""
MAX_VERBS = 64
"""Verb names read per element."""
ANSWER_KEYS = ("human", "object", "object class", "verb class")
THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"

ProblemCode = Literal[
    "not_an_object", "missing_key", "bad_box", "bad_label", "unknown_object",
    "degenerate_box", "unknown_verb", "invalid_pair", "no_verbs",
]
FATAL_PROBLEMS = frozenset({"not_an_object", "missing_key", "bad_box", "bad_label", "unknown_object"})
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def rank_scores(n: int) -> list[float]:
    """HOI-R1's rank scores of ``n`` triplets in answer order.

    >>> rank_scores(1), rank_scores(0)
    ([1.0], [])
    """
    if n <= 1:
        return [1.0] * max(n, 0)
    return [1.0 - 0.5 * k / (n - 1) for k in range(n)]


@dataclass(frozen=True)
class Triplet:
    """One answer element: a human box, an object box (ORIGINAL pixels), an object and verbs.

    Args:
        human_box: ``(x1, y1, x2, y2)`` of the human.
        object_box: ``(x1, y1, x2, y2)`` of the object.
        object_id: object id in the vocabulary.
        verb_ids: verb ids in the order written, without repeats (may be empty).
        score: confidence used to rank this triplet's detections.
        element: index of the answer element it was read from.
        verb_names: the verb names as written, one per verb id (used to find label spans).
    """

    human_box: tuple[float, float, float, float]
    object_box: tuple[float, float, float, float]
    object_id: int
    verb_ids: tuple[int, ...]
    score: float = 1.0
    element: int = -1
    verb_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ElementProblem:
    """What was wrong with answer element ``element`` (``code``, plus a short ``detail``)."""

    element: int
    code: ProblemCode
    detail: str = ""


@dataclass(frozen=True)
class ParsedAnswer:
    """Everything :func:`parse_answer` read from a completion.

    Args:
        triplets: triplets read, boxes in original pixels, scored by rank.
        structure_ok: the stripped text is exactly ``<think>…</think>`` then ``<answer>…</answer>``
            (whitespace allowed between), each tag exactly once.
        json_ok: the answer payload is a JSON list exactly as written (no repair).
        decoded: a list of elements was recovered, possibly after repairs.
        num_elements: elements in the recovered list (at most :data:`MAX_ELEMENTS`).
        problems: per-element problems.
        repairs: repairs that were needed (``missing_answer_tags``, ``code_fence``,
            ``extra_text``, ``bare_objects``, ``missing_commas``, ``single_quotes``,
            ``trailing_commas``).
        truncated: the text looks cut off (no ``</answer>``, ``<think>`` never closed, or the
            list never closed).
        capped: a work limit was hit (text length, elements or verbs).
        thinking: text between ``<think>`` and ``</think>``, if both are present.
        element_spans: ``(start, end)`` character span of each element in the text.
    """

    triplets: list[Triplet] = field(default_factory=list)
    structure_ok: bool = False
    json_ok: bool = False
    decoded: bool = False
    num_elements: int = 0
    problems: tuple[ElementProblem, ...] = ()
    repairs: tuple[str, ...] = ()
    truncated: bool = False
    capped: bool = False
    thinking: str | None = None
    element_spans: tuple[tuple[int, int], ...] = ()

    @property
    def num_valid_elements(self) -> int:
        """Elements without any problem (the ``keys`` reward also needs their boxes inside the image)."""
        bad = {p.element for p in self.problems}
        return self.num_elements - len(bad)

    @property
    def num_invalid_pairs(self) -> int:
        """(verb, object) combinations written that are not classes of the vocabulary."""
        return sum(p.code == "invalid_pair" for p in self.problems)

    def problem_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.code] = counts.get(p.code, 0) + 1
        return counts


# ===================================================================== parsing
def parse_answer(text: str, vocab: HOIVocabulary, frame: Frame) -> ParsedAnswer:
    """Read a completion into triplets (original pixels) and diagnostics; never raises."""
    if not isinstance(text, str):
        text = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else ""
    capped = len(text) > MAX_TEXT_CHARS
    text = text[:MAX_TEXT_CHARS]
    start, end, repairs, truncated = _locate_payload(text)
    scan = read_json_list(text, start, end, max_elements=MAX_ELEMENTS)
    repairs += scan.repairs
    capped |= scan.capped
    triplets: list[Triplet] = []
    problems: list[ElementProblem] = []
    for index, value in enumerate(scan.elements):
        triplet, found, verbs_capped = _read_element(index, value, vocab, frame)
        problems += found
        capped |= verbs_capped
        if triplet is not None:
            triplets.append(triplet)
    triplets = [_with_score(t, s) for t, s in zip(triplets, rank_scores(len(triplets)))]
    return ParsedAnswer(
        triplets=triplets,
        structure_ok=_structure_ok(text) and not capped,
        json_ok=scan.strict,
        decoded=scan.decoded,
        num_elements=len(scan.elements),
        problems=tuple(problems),
        repairs=tuple(dict.fromkeys(repairs)),
        truncated=truncated or scan.unclosed,
        capped=capped,
        thinking=_thinking(text),
        element_spans=tuple(scan.spans),
    )


def _structure_ok(text: str) -> bool:
    """Exactly ``<think>…</think><answer>…</answer>`` (whitespace between and around), each tag once."""
    s = text.strip()
    if any(s.count(tag) != 1 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)):
        return False
    tc, ao = s.find(THINK_CLOSE), s.find(ANSWER_OPEN)
    return s.startswith(THINK_OPEN) and s.endswith(ANSWER_CLOSE) and tc < ao and not s[tc + len(THINK_CLOSE) : ao].strip()


def _thinking(text: str) -> str | None:
    a, b = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    return text[a + len(THINK_OPEN) : b] if 0 <= a < b else None


def _locate_payload(text: str) -> tuple[int, int, list[str], bool]:
    """``(start, end)`` of the answer payload in ``text``, the repairs needed, truncation."""
    repairs: list[str] = []
    truncated = False
    a = text.find(ANSWER_OPEN)
    if a >= 0:
        start = a + len(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        if end < 0:
            end, truncated = len(text), True
    elif (t := text.rfind(THINK_CLOSE)) >= 0:
        start, end = t + len(THINK_CLOSE), len(text)
        repairs.append("missing_answer_tags")
    elif THINK_OPEN in text:  # reasoning was cut off: there is no answer yet
        return len(text), len(text), repairs, True
    else:
        start, end = 0, len(text)
        repairs.append("missing_answer_tags")
    return start, end, repairs, truncated


def _read_element(
    index: int, value: object, vocab: HOIVocabulary, frame: Frame
) -> tuple[Triplet | None, list[ElementProblem], bool]:
    """One element → a triplet (or ``None`` on a fatal problem), its problems, verbs capped."""
    if not isinstance(value, dict):
        return None, [ElementProblem(index, "not_an_object", type(value).__name__)], False
    fields: dict[str, object] = {}
    for key, item in value.items():
        fields.setdefault(_norm_key(key), item)
    problems = [ElementProblem(index, "missing_key", k) for k in ANSWER_KEYS if k not in fields]
    if problems:
        return None, problems, False
    boxes = [_read_box(fields["human"]), _read_box(fields["object"])]
    for name, box in zip(("human", "object"), boxes):
        if box is None:
            problems.append(ElementProblem(index, "bad_box", name))
    human = obj = None
    if not problems:
        human, obj = frame.from_text(boxes)
        for name, box in (("human", human), ("object", obj)):
            if not np.isfinite(box).all():
                problems.append(ElementProblem(index, "bad_box", name))
            elif box[2] <= box[0] or box[3] <= box[1]:
                problems.append(ElementProblem(index, "degenerate_box", name))
    object_name = fields["object class"]
    object_id = vocab.object_id(object_name) if isinstance(object_name, str) else None
    if not isinstance(object_name, str):
        problems.append(ElementProblem(index, "bad_label", "object class"))
    elif object_id is None:
        problems.append(ElementProblem(index, "unknown_object", object_name[:60]))
    names, bad_verbs, capped = _verb_names(fields["verb class"])
    if bad_verbs:
        problems.append(ElementProblem(index, "bad_label", "verb class"))
    verb_ids: list[int] = []
    verb_names: list[str] = []
    for name in names:
        verb = vocab.verb_id(name)
        if verb is None:
            problems.append(ElementProblem(index, "unknown_verb", name[:60]))
        elif verb not in verb_ids:
            verb_ids.append(verb)
            verb_names.append(name)
    if object_id is not None:
        for verb in verb_ids:
            if vocab.interaction_id(verb, object_id) is None:
                detail = f"{vocab.verbs[verb]} {vocab.objects[object_id]}"
                problems.append(ElementProblem(index, "invalid_pair", detail))
    if not verb_ids and not bad_verbs:
        problems.append(ElementProblem(index, "no_verbs"))
    if any(p.code in FATAL_PROBLEMS for p in problems) or object_id is None:
        return None, problems, capped
    human_box, object_box = tuple(map(float, human)), tuple(map(float, obj))
    triplet = Triplet(human_box, object_box, object_id, tuple(verb_ids), 1.0, index, tuple(verb_names))
    return triplet, problems, capped


def _norm_key(key: str) -> str:
    return " ".join(key.replace("_", " ").lower().split())


def _read_box(value: object) -> tuple[float, float, float, float] | None:
    """Four numbers from a list (numbers or numeric strings) or a short string; else ``None``."""
    if isinstance(value, str):
        if len(value) > 200:
            return None
        value = _NUMBER.findall(value)
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and len(v) > 64):
            return None
        try:
            out.append(float(v))
        except (ValueError, OverflowError):
            return None
    return tuple(out)


def _verb_names(value: object) -> tuple[list[str], bool, bool]:
    """Verb names from a string (comma-separated) or a list of strings; ``(names, bad type, capped)``."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if items is None:
        return [], True, False
    names: list[str] = []
    bad = False
    for item in items[:MAX_VERBS]:
        if not isinstance(item, str):
            bad = True
            continue
        names += [n.strip() for n in item.split(",", MAX_VERBS) if n.strip()]
        if len(names) > MAX_VERBS:
            break
    return names[:MAX_VERBS], bad, len(items) > MAX_VERBS or len(names) > MAX_VERBS


def _with_score(t: Triplet, score: float) -> Triplet:
    return Triplet(t.human_box, t.object_box, t.object_id, t.verb_ids, score, t.element, t.verb_names)
