"""Instructions and chat messages that ask a model for HOI triplets.

The instruction follows HOI-R1's recipe (arXiv 2510.05609, its released evaluation prompt) in
our own words: the task; the valid object classes; the verbs allowed with each object class;
numbered thinking guidance (count the people, say what they do, name the objects they interact
with, pick the allowed verbs); the box frame (:meth:`hoi_r1.frames.Frame.describe`: pixels of the
WxH image the model sees for ``absolute_resized``, 0..1000 for ``normalized_1000``); and the
``<think>…</think><answer>[…]</answer>`` contract with a one-line example. Names are written with
spaces (``sit on``, ``dining table``), the spelling :func:`hoi_r1.answer_render.render_answer` uses.

The vocabulary listed is the one passed in, so a user list replaces the dataset's (open
vocabulary). For HICO-DET (80 objects, 600 classes) the object list takes 715 characters, the
per-object verb lines 5,463, and the whole default instruction about 7,350 (roughly 1,800
tokens); ``PromptConfig(list_verbs_per_object=False)`` brings it to about 2,700.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.vocab import HOIVocabulary
>>> len(build_instruction(HOIVocabulary.hico_det(), Frame.for_image("absolute_resized", 640, 480)))
7354

>>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"], [("ride", "bicycle"), ("sit_on", "bicycle")])
>>> text = build_instruction(vocab, Frame.for_image("absolute_resized", 640, 480))
>>> print(text.split("\\n\\n")[2])
Verbs allowed with each object class (object class: verbs):
bicycle: ride, sit on
>>> [m["role"] for m in build_messages(text, answer="<think>…</think><answer>[]</answer>")]
['user', 'assistant']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hoi_r1.frames import Frame
from hoi_r1.vocab import HOIVocabulary

DEFAULT_TASK = (
    "You detect human-object interactions. Find every person in the image who interacts with an "
    "object and, for each person-object pair, report the person's box, the object's box, the "
    "object class and every verb that describes what the person does with the object."
)
THINKING_STEPS = (
    "How many people are in the image?",
    "What is each person doing?",
    "Which objects, from the object classes above, does each person interact with?",
    "For each person-object pair, which of the verbs allowed with that object class apply?",
)


@dataclass(frozen=True)
class PromptConfig:
    """How the instruction is written.

    Args:
        task: the opening sentence(s) stating the task.
        list_objects: list the valid object classes.
        list_verbs: list the valid verbs (per object class, or in one line; see next field).
        list_verbs_per_object: list verbs per object class (HOI-R1's "object: verbs" lines);
            when false, one line with every verb.
        thinking_guidance: add the numbered questions that guide the reasoning; when false,
            only ask for reasoning inside ``<think>…</think>``.
        show_example: show a one-line example of the answer layout.
        describe_answer: describe the box frame and the answer's JSON keys (the contract); when
            false, only ask for the answer inside ``<answer>…</answer>`` (no example either) — for a model that
            learns the layout from its SFT answers (the demo's tiny model: about 110 fewer
            prompt tokens per sample).
        max_objects_listed: list at most this many object classes (vocabulary order), ``None``
            for all; the listing says how many were left out.
        max_verbs_listed: list at most this many verbs per line, ``None`` for all.
        names: ``spaces`` writes ``sit_on`` as ``sit on`` (HOI-R1's spelling); ``vocabulary``
            writes the names as the vocabulary has them.
    """

    task: str = DEFAULT_TASK
    list_objects: bool = True
    list_verbs: bool = True
    list_verbs_per_object: bool = True
    thinking_guidance: bool = True
    show_example: bool = True
    describe_answer: bool = True
    max_objects_listed: int | None = None
    max_verbs_listed: int | None = None
    names: Literal["spaces", "vocabulary"] = "spaces"

    def __post_init__(self) -> None:
        for name in ("max_objects_listed", "max_verbs_listed"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"PromptConfig.{name} must be None or at least 1, found {value}")


def build_instruction(vocab: HOIVocabulary, frame: Frame, config: PromptConfig | None = None) -> str:
    """The user instruction for one image (the frame carries that image's size).

    Args:
        vocab: the label space the model may use (a dataset's or a user's).
        frame: the coordinate frame boxes are written in.
        config: style options; defaults to :class:`PromptConfig`.
    """
    config = config or PromptConfig()
    sections = [config.task]
    if config.list_objects:
        sections.append("Object classes:\n" + _listing([_name(o, config) for o in vocab.objects], config.max_objects_listed))
    if config.list_verbs and config.list_verbs_per_object:
        sections.append(_verbs_per_object(vocab, config))
    elif config.list_verbs:
        sections.append("Verbs:\n" + _listing([_name(v, config) for v in vocab.verbs], config.max_verbs_listed))
    if config.thinking_guidance:
        steps = "\n".join(f"{i}. {q}" for i, q in enumerate(THINKING_STEPS, start=1))
        sections.append("Think it through inside <think> and </think>, answering these questions:\n" + steps)
    else:
        sections.append("Think it through inside <think> and </think>.")
    if not config.describe_answer:
        sections.append("Then answer inside <answer> and </answer>.")
        return "\n\n".join(sections)
    contract = (
        f"{frame.describe()} Then write the answer inside <answer> and </answer>: a JSON list with one "
        "element per person-object pair, with the keys \"human\", \"object\", \"object class\" and "
        "\"verb class\" (a list of verbs). Use only the object classes and verbs listed above. If no "
        "person interacts with an object, answer []."
    )
    if config.show_example:
        contract += (
            "\nLayout:\n<think>reasoning</think><answer>[{\"human\": [x1, y1, x2, y2], \"object\": "
            "[x1, y1, x2, y2], \"object class\": \"<object class>\", \"verb class\": [\"<verb>\", "
            "\"<verb>\"]}]</answer>"
        )
    sections.append(contract)
    return "\n\n".join(sections)


def build_messages(instruction: str, image: Any = None, answer: str | None = None) -> list[dict]:
    """Chat messages in the Hugging Face layout Qwen2.5-VL processors read.

    Args:
        instruction: the user text (from :func:`build_instruction`).
        image: the image object or path to put in the image entry; ``None`` leaves a bare
            ``{"type": "image"}`` placeholder (the processor receives the image separately).
        answer: the assistant turn (SFT targets); ``None`` for generation prompts.

    >>> build_messages("Find the pairs.")
    [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'Find the pairs.'}]}]
    """
    image_part: dict = {"type": "image"} if image is None else {"type": "image", "image": image}
    messages = [{"role": "user", "content": [image_part, {"type": "text", "text": instruction}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _verbs_per_object(vocab: HOIVocabulary, config: PromptConfig) -> str:
    objects = vocab.objects_with_interactions()
    shown = objects if config.max_objects_listed is None else objects[: config.max_objects_listed]
    lines = [
        f"{_name(vocab.objects[o], config)}: "
        + _listing([_name(vocab.verbs[v], config) for v in vocab.verbs_for_object(o)], config.max_verbs_listed)
        for o in shown
    ]
    if len(shown) < len(objects):
        lines.append(f"(verbs of {len(objects) - len(shown)} more object classes not listed)")
    return "Verbs allowed with each object class (object class: verbs):\n" + "\n".join(lines)


def _listing(names: list[str], limit: int | None) -> str:
    if limit is None or len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" (and {len(names) - limit} more)"


def _name(name: str, config: PromptConfig) -> str:
    return name.replace("_", " ") if config.names == "spaces" else name
