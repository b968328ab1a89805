"""The answer renderer: a sample's annotations written as the answer text a model is trained on
(the format of :mod:`hoi_r1.answer`, whose parser reads it back; docs/answer_format.md).

One element per distinct (human, object) pair with all its verbs; boxes in the text frame of a
:class:`~hoi_r1.frames.Frame`; names with underscores replaced by spaces (HOI-R1's prompt lists
``sit on``, ``dining table``) unless asked otherwise. Without teacher reasoning, the ``<think>``
block holds :func:`default_reasoning`, a short deterministic description of the target.
"""

from __future__ import annotations

import json
from typing import Literal

from hoi_r1.answer import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from hoi_r1.frames import Frame
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

ReasoningStyle = Literal["verbs", "pairs"]
"""What :func:`default_reasoning` writes: ``verbs`` names each pair's verbs in the reasoning
(before any box is written); ``pairs`` names the people and objects only, so each pair's verbs
are first written in the answer, after its two boxes."""


def render_answer(
    sample: HOISample,
    vocab: HOIVocabulary,
    frame: Frame,
    reasoning: str | None = None,
    names: Literal["spaces", "vocabulary"] = "spaces",
    reasoning_style: ReasoningStyle = "verbs",
) -> str:
    """The answer text of ``sample``: one element per distinct (human, object) pair.

    Args:
        sample: the annotations (boxes in original pixels).
        vocab: vocabulary whose names are written.
        frame: the text frame; its ``original_size`` must be the sample's size.
        reasoning: text inside ``<think>``; ``None`` writes :func:`default_reasoning`.
        names: ``spaces`` writes names with underscores replaced by spaces (HOI-R1's prompt
            spelling); ``vocabulary`` writes them as the vocabulary has them.
        reasoning_style: what :func:`default_reasoning` writes when ``reasoning`` is ``None``.

    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"])
    >>> s = HOISample(0, "a.jpg", "a.jpg", 100, 80, human_boxes=[[1, 2, 30, 60]],
    ...               object_boxes=[[5, 40, 90, 79]], object_labels=[1], pairs=[[0, 0, 0, 2], [0, 0, 1, 3]])
    >>> print(render_answer(s, vocab, Frame("normalized_1000", (100, 80), (112, 84)), reasoning="..."))
    <think>...</think><answer>[{"human": [10, 25, 300, 750], "object": [50, 500, 900, 988], "object class": "bicycle", "verb class": ["ride", "sit on"]}]</answer>
    """
    if tuple(frame.original_size) != (sample.width, sample.height):
        raise ValueError(
            f"{sample.file_name}: frame original_size {frame.original_size} is not the image size "
            f"{(sample.width, sample.height)}"
        )
    reasoning = default_reasoning(sample, vocab, reasoning_style) if reasoning is None else reasoning
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        if tag in reasoning:
            raise ValueError(f"{sample.file_name}: reasoning must not contain the tag {tag}")
    spell = _spaced if names == "spaces" else str
    groups = sample.grouped_pairs()
    humans = frame.to_text(sample.human_boxes[[h for h, _, _ in groups]]) if groups else []
    objects = frame.to_text(sample.object_boxes[[o for _, o, _ in groups]]) if groups else []
    elements = [
        {
            "human": humans[i].tolist(),
            "object": objects[i].tolist(),
            "object class": spell(vocab.objects[int(sample.object_labels[o])]),
            "verb class": [spell(vocab.verbs[v]) for v in verbs],
        }
        for i, (_, o, verbs) in enumerate(groups)
    ]
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{ANSWER_OPEN}{json.dumps(elements)}{ANSWER_CLOSE}"


def default_reasoning(sample: HOISample, vocab: HOIVocabulary, style: ReasoningStyle = "verbs") -> str:
    """A short, deterministic description of the target used when no teacher reasoning exists
    (``style``: :data:`ReasoningStyle`).

    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"])
    >>> s = HOISample(0, "a.jpg", "a.jpg", 100, 80, human_boxes=[[1, 2, 30, 60]],
    ...               object_boxes=[[5, 40, 90, 79]], object_labels=[1], pairs=[[0, 0, 0, 2], [0, 0, 1, 3]])
    >>> default_reasoning(s, vocab)
    'I see 1 person interacting with objects. Person 1 with the bicycle: ride, sit on.'
    >>> default_reasoning(s, vocab, "pairs")
    'I see 1 person interacting with objects. Person 1 with the bicycle.'
    """
    groups = sample.grouped_pairs()
    if not groups:
        return "I see no person interacting with an object."
    order: dict[int, int] = {}
    for h, _, _ in groups:
        order.setdefault(h, len(order) + 1)
    people = f"{len(order)} person" if len(order) == 1 else f"{len(order)} people"
    if style not in ("verbs", "pairs"):
        raise ValueError(f"reasoning style must be 'verbs' or 'pairs', found {style!r}")
    named = [f"Person {order[h]} with the {_spaced(vocab.objects[int(sample.object_labels[o])])}" for h, o, _ in groups]
    if style == "pairs":
        parts = [f"{n}." for n in named]
    else:
        parts = [f"{n}: {', '.join(_spaced(vocab.verbs[v]) for v in verbs)}." for n, (_, _, verbs) in zip(named, groups)]
    return f"I see {people} interacting with objects. " + " ".join(parts)


def _spaced(name: str) -> str:
    return name.replace("_", " ")
