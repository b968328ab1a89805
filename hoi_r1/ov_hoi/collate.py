"""Batches of the tool-using mode (``data.task: tools``): cold-start conversations for SFT and the
opening messages of episodes for generation.

* :class:`ToolSFTCollator` — the recorded episode of an image (``data.cold_start_file``, written
  by ``hoi-r1 cold-start``): the tool system prompt, the image and the query, then the recorded
  assistant and tool turns, with the images that tool responses showed after the first one. The
  labels are :class:`~hoi_r1.collate.SFTCollator`'s: every assistant turn, never a tool turn.
* :class:`ToolGenerationCollator` — no tensors: the multi-turn driver encodes every turn itself
  (:mod:`hoi_r1.ov_hoi.episode_rollout`). Per sample, ``tool_messages`` (the tool system prompt
  and the user turn with the image inline, :func:`~hoi_r1.ov_hoi.prompts.build_tool_messages`)
  and ``tool_contexts`` (:class:`~hoi_r1.ov_hoi.protocol.ToolContext`: frame, file name, image,
  the detector that answers the detection tools).
"""

from __future__ import annotations

from hoi_r1.collate import Conversation, GenerationCollator, SFTCollator
from hoi_r1.image_dataset import ImageItem
from hoi_r1.ov_hoi.builtin import default_registry
from hoi_r1.ov_hoi.cold_start_records import record_frame, record_images, to_chat_messages
from hoi_r1.ov_hoi.prompts import build_tool_messages
from hoi_r1.ov_hoi.protocol import ToolContext


class ToolSFTCollator(SFTCollator):
    """:class:`~hoi_r1.collate.SFTCollator` of cold-start conversations (its arguments;
    ``reasoning_style`` does not apply)."""

    def _conversation(self, item: ImageItem) -> Conversation:
        if item.trace is None:
            raise ValueError(f"{item.sample.file_name}: no cold-start trace (data.cold_start_file) for this image")
        registry = default_registry()
        frame = record_frame(item.trace)
        messages = build_tool_messages(registry, self.vocab.verbs, self.vocab.objects, frame)
        messages += to_chat_messages(item.trace)
        text = self.processor.apply_chat_template(messages, tokenize=False)
        images = [item.image, *record_images(item.trace, item.image, registry)]
        return Conversation(item, frame, text, images)


class ToolGenerationCollator(GenerationCollator):
    """The opening messages and tool contexts of episodes.

    Args:
        processor: the model's processor.
        vocab: vocabulary of the open-vocabulary query.
        prompt: prompt options.
        frame_kind: coordinate frame of boxes in the text.
        detector: who answers the detection tools; ``None``: they answer with an error.
    """

    def __init__(self, processor, vocab, prompt, frame_kind, detector=None) -> None:
        super().__init__(processor, vocab, prompt, frame_kind)
        self.detector = detector

    def __call__(self, items: list[ImageItem]) -> dict:
        registry = default_registry()
        conversations, messages, contexts = [], [], []
        for item in items:
            frame = self.frame_for(item.sample)
            conversations.append(Conversation(item, frame, ""))
            messages.append(build_tool_messages(registry, self.vocab.verbs, self.vocab.objects, frame, image=item.image))
            contexts.append(ToolContext(frame, item.sample.file_name, item.image, self.detector))
        return {"tool_messages": messages, "tool_contexts": contexts, **self._meta(conversations)}
