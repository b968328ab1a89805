"""Tool-using episodes with a Hugging Face policy: writing model turns, and the training
sequences GRPO learns from (docs/ov_hoi.md, "Tool use in validation and GRPO").

**Writing turns.** :class:`PolicyTurnWriter` is the ``generate_batch`` of
:func:`~hoi_r1.ov_hoi.episode_driver.run_episodes`: the unfinished episodes of a batch are rendered with
the chat template (the prompt, then every turn so far, then ``<|im_start|>assistant``), encoded
with all their images (the prompt's, then the crops of the tool turns) and completed in one
left-padded ``generate`` call. A turn ends at an end-of-turn token or at one of the episode
settings' stop strings (:class:`~hoi_r1.ov_hoi.episode_driver.EpisodeSettings`). Image placeholder
tokens are blocked, and chat control strings (``<|im_start|>``, ``<|image_pad|>``…) are removed
from the decoded text, so model text can never forge a turn or an image span when it is encoded
again. Each round re-encodes the whole conversation (no cache is kept across turns).

**Training sequences.** :func:`episode_sequences` renders prompt + turns exactly as the
cold-start SFT collator does (:class:`~hoi_r1.collate.SFTCollator`, ``task: tools``): the same
messages, the same chat template, the tool turns' images after the prompt's. The model-written
tokens are those the SFT labels cover (:class:`~hoi_r1.collate.AssistantTokens`: every assistant
turn with its ``<|im_end|>``); tool responses, images, the prompt and padding are not. The
*region* of a row runs from its first model token to the end of the (left-padded) sequence;
GRPO's completion tensors are the regions, masked to the model tokens, and
:func:`episode_logps` gives the log-probabilities of the same columns.

What is trained is the decoded text encoded again, not the sampled token ids: a turn may encode
to other tokens than were sampled (and a turn that stopped at a stop string gets the template's
``<|im_end|>``). The policy, old and reference log-probabilities all use the encoded tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from hoi_r1.collate import AssistantTokens, encode_conversations, move_batch
from hoi_r1.generation import IMAGE_TOKENS, Completions, completion_mask, end_token_ids, model_inputs
from hoi_r1.grpo_loss import per_token_logps
from hoi_r1.ov_hoi.episode import Episode, Turn
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings, EpisodeState, run_episodes
from hoi_r1.ov_hoi.protocol import ToolRegistry
from hoi_r1.rollout.engine import RolloutSampling


class PolicyTurnWriter:
    """Write the next model turn of many conversations in one padded ``generate`` call.

    Args:
        model: the policy (Hugging Face or peft model), used as it is.
        processor: the model's processor (chat template, tokenizer, image processor).
        sampling: token limit per turn, temperature, top-p / top-k, or greedy decoding.
        stop_strings: texts that end a turn (besides the end-of-turn tokens).
    """

    def __init__(self, model, processor, sampling: RolloutSampling, stop_strings: Sequence[str] = ()) -> None:
        self.model, self.processor, self.sampling = model, processor, sampling
        self.stop_strings = tuple(stop_strings)
        tok = processor.tokenizer
        self.end_ids = end_token_ids(model, tok)
        self.blocked_ids = [tok.convert_tokens_to_ids(t) for t in IMAGE_TOKENS]
        self.control = sorted({*tok.all_special_tokens, *IMAGE_TOKENS}, key=len, reverse=True)

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], images: list[list]) -> list[tuple[str, bool]]:
        """``(text, truncated)`` of the next turn of each conversation; ``images[i]`` are the
        images of conversation ``i``'s bare ``{"type": "image"}`` placeholders, in order."""
        tok, s = self.processor.tokenizer, self.sampling
        texts = [self.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
        flat = [im for m, extra in zip(conversations, images) for im in conversation_images(m, extra)]
        inputs = move_batch(dict(encode_conversations(self.processor, texts, flat, "left")), self.model.device)
        sample = not s.greedy
        out = self.model.generate(
            **model_inputs(inputs),
            max_new_tokens=s.max_new_tokens,
            do_sample=sample,
            temperature=s.temperature if sample else None,
            top_p=s.top_p if sample else None,
            top_k=s.top_k if sample else None,
            suppress_tokens=self.blocked_ids,
            eos_token_id=self.end_ids,
            pad_token_id=tok.pad_token_id,
            stop_strings=list(self.stop_strings) or None,
            tokenizer=tok if self.stop_strings else None,
            return_dict_in_generate=True,
        )
        ids = out.sequences[:, inputs["input_ids"].shape[1] :]
        mask = completion_mask(ids, self.end_ids)
        decoded = tok.batch_decode(ids * mask + tok.pad_token_id * (1 - mask), skip_special_tokens=True)
        ends = torch.tensor(self.end_ids, device=ids.device)
        turns = []
        for row, text in zip(ids, decoded):
            text = self.clean(text)
            ended = bool(torch.isin(row, ends).any()) or any(stop in text for stop in self.stop_strings)
            turns.append((text, not ended))
        return turns

    def clean(self, text: str) -> str:
        """``text`` without chat control strings (the model may spell them out of plain tokens)."""
        for control in self.control:
            text = text.replace(control, "")
        return text


def conversation_images(messages: Sequence[dict], images: Sequence) -> list:
    """Every image of a chat conversation, in order: an image given inline
    (``{"type": "image", "image": im}``) is taken as it is, each bare ``{"type": "image"}``
    takes the next of ``images``.

    >>> messages = [{"role": "user", "content": [{"type": "image", "image": "A"}, {"type": "text", "text": "?"}]},
    ...             {"role": "tool", "content": [{"type": "text", "text": "crop"}, {"type": "image"}]}]
    >>> conversation_images(messages, ["B"])
    ['A', 'B']
    """
    queue, out = list(images), []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "image" or "image" in part:
                if part.get("image") is not None:
                    out.append(part["image"])
                elif queue:
                    out.append(queue.pop(0))
                else:
                    raise ValueError("the conversation has more image placeholders than images")
    if queue:
        raise ValueError(f"{len(queue)} image(s) left over: the conversation has fewer image placeholders")
    return out


def run_policy_episodes(
    write_turns, batch: dict, n: int, settings: EpisodeSettings, registry: ToolRegistry | None = None
) -> list[Episode]:
    """``n`` episodes per prompt of a ``task: tools`` generation batch (prompt-major: episode
    ``i·n + k`` belongs to prompt ``i``), all run in lockstep by ``write_turns``
    (a :class:`PolicyTurnWriter`, or any ``generate_batch`` of :func:`~hoi_r1.ov_hoi.episode_driver.run_episodes`)."""
    if "tool_messages" not in batch:
        raise ValueError("tool-using episodes need a data.task 'tools' batch (tool_messages and tool_contexts)")
    states = [
        EpisodeState(messages, context, settings.max_turns, registry, settings.max_calls_per_turn)
        for messages, context in zip(batch["tool_messages"], batch["tool_contexts"])
        for _ in range(n)
    ]
    return run_episodes(write_turns, states)


# ===================================================================== training sequences
@dataclass
class EpisodeCompletions(Completions):
    """A GRPO rollout of tool-using episodes: the :class:`~hoi_r1.generation.Completions` the
    buffer keeps (transcripts, training-sequence regions, plain turns) and the episodes behind
    them, which the OV-HOI rewards and the tool statistics read.

    Attributes:
        episodes: the episodes, one per completion, in the same (prompt-major) order.
    """

    episodes: list[Episode] = field(default_factory=list)


def plain_turns(episode: Episode) -> list[dict]:
    """An episode's turns as plain data (checkpoints read it with ``weights_only=True``): role,
    text and the images as ``(H, W, 3)`` uint8 tensors."""
    return [
        {"role": t.role, "text": t.text, "images": [torch.from_numpy(np.array(im.convert("RGB"))) for im in t.images]}
        for t in episode.turns
    ]


def episode_of(turns: Sequence[dict]) -> Episode:
    """The turns of :func:`plain_turns` as an :class:`~hoi_r1.ov_hoi.episode.Episode` (turns only)."""
    return Episode([Turn(t["role"], t["text"], tuple(Image.fromarray(x.cpu().numpy()) for x in t["images"])) for t in turns])


@dataclass
class EpisodeSequences:
    """Prompt + turns of ``R`` episodes, encoded for the model.

    Args:
        inputs: the processor's tensors, left-padded ``(R, L)``, images included.
        model_mask: ``(R, L)`` true on the model-written tokens.
        starts: ``(R,)`` column of each row's first model token.
    """

    inputs: dict
    model_mask: torch.Tensor
    starts: torch.Tensor

    def region(self, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, T)`` token ids from each row's first model token on (padded with ``pad_id``),
        and ``(R, T)`` the model-token mask there; ``T`` is the longest region."""
        ids = self.inputs["input_ids"]
        cols, valid = _region_columns(self.starts, ids.shape[1], ids.shape[1] - int(self.starts.min()))
        region = torch.where(valid, ids.gather(1, cols), torch.full_like(cols, pad_id))
        return region, self.model_mask.gather(1, cols) & valid


def episode_sequences(processor, prompts: Sequence[list[dict]], turns: Sequence[Sequence[dict]]) -> EpisodeSequences:
    """Encode each prompt (``tool_messages`` of a batch) followed by its episode's turns
    (:func:`plain_turns`) in the chat layout of the cold-start SFT."""
    texts, images = [], []
    for prompt, row in zip(prompts, turns, strict=True):
        episode = episode_of(row)
        messages = [*prompt, *episode.messages()]
        texts.append(processor.apply_chat_template(messages, tokenize=False))
        images += conversation_images(messages, episode.images)
    inputs = dict(encode_conversations(processor, texts, images, "left"))
    mask = AssistantTokens(processor.tokenizer).mask(inputs["input_ids"], inputs["attention_mask"])
    if not mask.any(dim=1).all():
        raise ValueError("an episode has no model-written token")
    starts = mask.int().argmax(dim=1)  # first true column
    return EpisodeSequences(inputs, mask, starts)


def episode_logps(model, sequences: EpisodeSequences, width: int, temperature: float) -> torch.Tensor:
    """``(R, width)`` log-probs of the region tokens (:meth:`EpisodeSequences.region`) under
    ``model``, logits divided by ``temperature``; 0 past a row's region. One forward pass, with
    logits only from the earliest region start on."""
    inputs = sequences.inputs
    ids, starts = inputs["input_ids"], sequences.starts.to(inputs["input_ids"].device)
    length, first = ids.shape[1], int(starts.min())
    logits = model(**model_inputs(inputs), logits_to_keep=length - first + 1, use_cache=False).logits[:, :-1]
    logps = per_token_logps(logits, ids[:, first:], temperature)  # (R, L - first): tokens first..L-1
    cols, valid = _region_columns(starts - first, length - first, width)
    return logps.gather(1, cols) * valid


def _region_columns(starts: torch.Tensor, length: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, width)`` columns ``starts[r] + j`` (clamped into ``[0, length)``) and whether they are inside."""
    cols = starts[:, None] + torch.arange(width, device=starts.device)[None]
    return cols.clamp(max=length - 1), cols < length
