"""Batches for SFT (whole conversations, loss on the answer only) and for generation (prompts),
of HOI answers (:class:`SFTCollator`, :class:`GenerationCollator`) and of grounding answers
(:class:`GroundingSFTCollator`, :class:`GroundingGenerationCollator`); the tool-using episodes
of ``task: tools`` have theirs in :mod:`hoi_r1.ov_hoi.collate`, and :mod:`hoi_r1.tasks` says
which task uses which.

SFT labels are ``-100`` everywhere except the assistant's turns and their closing
``<|im_end|>``: the system, user and tool turns, the image tokens and the padding are masked.
Sequences are never cut: a conversation longer than ``max_length`` (image tokens included) is
left out of the batch and counted in :attr:`SFTCollator.too_long`, because cutting could split
an image span and break the model's image-token bookkeeping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from hoi_r1.answer_render import ReasoningStyle, render_answer
from hoi_r1.frames import Frame, FrameKind
from hoi_r1.grounding import build_grounding_instruction, render_grounding_answer
from hoi_r1.image_dataset import ImageItem
from hoi_r1.models import pixel_limits
from hoi_r1.prompts import PromptConfig, build_instruction, build_messages
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


@dataclass
class Conversation:
    """One conversation of a batch: its image item, coordinate frame and chat-template text."""

    item: ImageItem
    frame: Frame
    text: str
    images: list | None = None  # every image of the conversation in order (default: the item's)

    def all_images(self) -> list:
        return self.images if self.images is not None else [self.item.image]


class _Collator:
    def __init__(self, processor, vocab: HOIVocabulary, prompt: PromptConfig, frame_kind: FrameKind) -> None:
        self.processor = processor
        self.vocab = vocab
        self.prompt = prompt
        self.frame_kind = frame_kind
        self._pixels = pixel_limits(processor.image_processor)

    def frame_for(self, sample: HOISample) -> Frame:
        """The coordinate frame of ``sample`` under the processor's resize settings."""
        lo, hi, factor = self._pixels
        return Frame.for_image(self.frame_kind, sample.width, sample.height, min_pixels=lo, max_pixels=hi, factor=factor)

    def instruction(self, frame: Frame) -> str:
        return build_instruction(self.vocab, frame, self.prompt)

    def _encode(self, conversations: list[Conversation], padding_side: str) -> dict:
        images = [image for c in conversations for image in c.all_images()]
        return encode_conversations(self.processor, [c.text for c in conversations], images, padding_side)

    @staticmethod
    def _meta(conversations: list[Conversation]) -> dict:
        return {
            "samples": [c.item.sample for c in conversations],
            "frames": [c.frame for c in conversations],
            "ticket": _last_ticket(conversations),
        }


class SFTCollator(_Collator):
    """Chat-template conversations with the target answer; labels on the answer tokens only.

    Args:
        processor: the model's processor.
        vocab: vocabulary listed in the prompt and used to write the answer.
        prompt: prompt options.
        frame_kind: coordinate frame of boxes in the text.
        max_length: longest conversation in tokens; longer ones are left out and counted.
        reasoning_style: what the ``<think>`` block of a target says when the sample has no
            reasoning of its own (:data:`hoi_r1.answer_render.ReasoningStyle`).
    """

    def __init__(self, processor, vocab, prompt, frame_kind, max_length: int = 4096,
                 reasoning_style: ReasoningStyle = "verbs") -> None:
        super().__init__(processor, vocab, prompt, frame_kind)
        self.max_length = max_length
        self.reasoning_style = reasoning_style
        self.too_long = 0
        self._assistant = AssistantTokens(processor.tokenizer)

    def __call__(self, items: list[ImageItem]) -> dict:
        conversations = [self._conversation(it) for it in items]
        batch = self._encode(conversations, "right")
        lengths = batch["attention_mask"].sum(dim=1)
        if (lengths > self.max_length).any():
            keep = [c for c, n in zip(conversations, lengths.tolist()) if n <= self.max_length]
            dropped = len(conversations) - len(keep)
            self.too_long += dropped
            log.warning(
                "left out %d conversation(s) longer than max_length=%d tokens (%d so far)",
                dropped, self.max_length, self.too_long,
            )
            if not keep:
                raise ValueError(
                    f"every conversation of a batch is longer than max_length={self.max_length}: raise "
                    "data.max_length or lower data.max_pixels"
                )
            conversations = keep
            batch = self._encode(conversations, "right")
        batch = dict(batch)
        batch["labels"] = self.labels(batch["input_ids"], batch["attention_mask"])
        batch.update(self._meta(conversations))
        return batch

    def _conversation(self, item: ImageItem) -> Conversation:
        frame = self.frame_for(item.sample)
        messages = build_messages(self.instruction(frame), answer=self.answer(item, frame))
        text = self.processor.apply_chat_template(messages, tokenize=False)
        return Conversation(item, frame, text)

    def answer(self, item: ImageItem, frame: Frame) -> str:
        """The target answer of ``item``: its HOI pairs, with its reasoning or the ``<think>`` of
        ``reasoning_style``."""
        return render_answer(item.sample, self.vocab, frame, reasoning=item.reasoning, reasoning_style=self.reasoning_style)

    def labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids`` with everything but the assistant turns (each with its ``<|im_end|>``)
        set to -100: one answer for a plain HOI conversation, every model-written turn of a
        multi-turn (tool-using) one, never a system, user or tool turn."""
        keep = self._assistant.mask(input_ids, attention_mask)
        return torch.where(keep, input_ids, torch.full_like(input_ids, IGNORE_INDEX))


class AssistantTokens:
    """Finds the model-written tokens of chat-template conversations: every assistant turn's
    content with its closing ``<|im_end|>``; never a system, user or tool turn, an image token or
    padding (either side).

    A turn opens with ``<|im_start|>assistant`` and a newline token; content that itself starts
    with a line break is encoded together with that newline (one token), which then counts as
    the content's.

    Args:
        tokenizer: the model's tokenizer (Qwen chat tokens).
    """

    def __init__(self, tokenizer) -> None:
        self.start = torch.tensor(tokenizer.encode("<|im_start|>assistant", add_special_tokens=False))
        newline = tokenizer.encode("\n", add_special_tokens=False)
        self.newline_id = newline[0] if len(newline) == 1 else None
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` true on the assistant turns' tokens."""
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        k = len(self.start)
        for row in range(input_ids.shape[0]):
            ids = input_ids[row]
            hits = (ids.unfold(0, k, 1) == self.start.to(ids.device)).all(dim=1).nonzero().flatten()
            if len(hits) == 0:
                raise ValueError("conversation has no assistant turn: check the chat template")
            attended = attention_mask[row].nonzero().flatten()
            for hit in hits.tolist():
                first = hit + k
                if first < len(ids) and int(ids[first]) == self.newline_id:
                    first += 1
                ends = (ids[first:] == self.end_id).nonzero().flatten()
                last = first + int(ends[0]) if len(ends) else int(attended[-1])
                keep[row, first : last + 1] = True
        keep &= attention_mask.bool()
        keep &= input_ids != self.image_id
        return keep


class GenerationCollator(_Collator):
    """Prompts only (left-padded, ending with the assistant turn's opening) plus the targets.

    Args:
        processor: the model's processor.
        vocab: vocabulary listed in the prompt.
        prompt: prompt options.
        frame_kind: coordinate frame of boxes in the text.
    """

    def __call__(self, items: list[ImageItem]) -> dict:
        conversations = []
        for item in items:
            frame = self.frame_for(item.sample)
            messages = build_messages(self.instruction(frame))
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            conversations.append(Conversation(item, frame, text))
        batch = dict(self._encode(conversations, "left"))
        batch.update(self._meta(conversations))
        return batch


class GroundingSFTCollator(SFTCollator):
    """:class:`SFTCollator` of the grounding task: every person and object with its box
    (:mod:`hoi_r1.grounding`); ``reasoning_style`` does not apply."""

    def instruction(self, frame: Frame) -> str:
        return build_grounding_instruction(self.vocab, frame)

    def answer(self, item: ImageItem, frame: Frame) -> str:
        return render_grounding_answer(item.sample, self.vocab, frame)


class GroundingGenerationCollator(GenerationCollator):
    """:class:`GenerationCollator` of the grounding task."""

    def instruction(self, frame: Frame) -> str:
        return build_grounding_instruction(self.vocab, frame)


def encode_conversations(processor, texts: list[str], images: list, padding_side: str) -> dict:
    """The processor's tensors for chat-template texts and their images (in order), padded on
    ``padding_side``."""
    tok = processor.tokenizer
    previous, tok.padding_side = tok.padding_side, padding_side
    try:
        return processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = previous


def _last_ticket(conversations: list[Conversation]) -> tuple[int, int, int] | None:
    tickets = [c.item.ticket for c in conversations if c.item.ticket is not None]
    return max(tickets, key=lambda t: (t[1], t[2])) if tickets else None


def move_batch(batch: dict, device: torch.device) -> dict:
    """Move a batch's tensors to ``device``; samples and frames (frozen dataclasses) stay as they are.

    Lightning's default transfer recurses into dataclasses and rejects frozen ones.
    """
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
