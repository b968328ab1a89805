"""Generate answers with a Hugging Face model: sampling settings, blocked image tokens, and the
per-token log-probabilities that the ``logprob`` confidence score needs.

Image placeholder tokens (``<|image_pad|>``, ``<|vision_start|>``…) are suppressed during
sampling: a sampled image-pad token would break the next forward pass, which counts image
tokens to place the image features.

Log-probabilities are computed only when asked for (``generate(..., logprobs=True)``) and are
gathered step by step (:class:`ChosenTokenLogprobs`): each step's ``(rows, vocabulary)`` scores
are reduced to the chosen token's log-probability and released at once, so a generation never
holds ``steps × rows × vocabulary`` floats (Qwen's 151,936-token vocabulary, 16 rows × 1,024
tokens: ≈ 10 GB per copy in fp32). The values are the ones of the scores ``generate`` sampled
from (after temperature, top-k / top-p and the blocked tokens), exactly as when all scores were
kept and stacked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoi_r1.strategies import unsharded_root

IMAGE_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")


@dataclass
class GenerationSettings:
    """How answers are generated.

    Args:
        max_new_tokens: longest completion in tokens.
        do_sample: sample (``True``) or decode greedily.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        top_k: keep only the ``top_k`` most likely tokens (0 disables).
        num_samples: completions per prompt (the ``vote`` score uses them; others use the first).
    """

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_samples: int = 1


torch.serialization.add_safe_globals([GenerationSettings])  # read back from checkpoints


@dataclass
class Completions:
    """Generated completions, ``num_samples`` per prompt, prompt-major.

    Attributes:
        texts: decoded completions (special tokens removed), ``(B * n)``.
        token_ids: completion token ids, ``(B * n, T)``, padded with the pad id.
        token_logprobs: log-probability of each sampled token under the sampling distribution,
            ``(B * n, T)``, 0 on padding; ``None`` where the generation was not asked for them
            (``generate(..., logprobs=False)``, the ``hf`` rollout engine by default).
        mask: 1 on real completion tokens, ``(B * n, T)``.
        truncated: per completion, whether it stopped at ``max_new_tokens`` without an end token.
        turns: tool-using episodes (``data.task: tools``): per completion, its turns as plain
            data (:func:`hoi_r1.ov_hoi.episode_rollout.plain_turns`); then ``token_ids`` / ``mask``
            are the training sequence from the first model token on, masked to the model's
            tokens. ``None`` for single-turn completions.
    """

    texts: list[str]
    token_ids: torch.Tensor
    token_logprobs: torch.Tensor | None
    mask: torch.Tensor
    truncated: list[bool]
    turns: list | None = None

    def select(self, rows: list[int]) -> "Completions":
        """The completions of ``rows``, in that order.

        >>> c = Completions(["a", "b"], torch.tensor([[1], [2]]), None, torch.ones(2, 1), [False, True])
        >>> picked = c.select([1])
        >>> picked.texts, picked.token_ids.tolist(), picked.truncated
        (['b'], [[2]], [True])
        """
        index = torch.tensor(rows, dtype=torch.long)
        logprobs = self.token_logprobs[index] if self.token_logprobs is not None else None
        return Completions([self.texts[i] for i in rows], self.token_ids[index], logprobs, self.mask[index],
                           [self.truncated[i] for i in rows], [self.turns[i] for i in rows] if self.turns is not None else None)


def model_inputs(batch: dict) -> dict:
    """The tensors of a batch that the model's forward / generate take."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


@torch.no_grad()
def generate(model, processor, batch: dict, settings: GenerationSettings, logprobs: bool = True) -> Completions:
    """Complete every prompt of a generation batch ``settings.num_samples`` times.

    Args:
        model: a Hugging Face generative model (or a wrapper with its ``generate``).
        processor: the model's processor (its tokenizer: pad, end and image tokens, decoding).
        batch: a generation batch (left-padded prompts and their images).
        settings: sampling settings.
        logprobs: also return each sampled token's log-probability under the distribution it was
            sampled from (``Completions.token_logprobs``; ``None`` otherwise). Only the chosen
            token's value is kept per step (:class:`ChosenTokenLogprobs`); without it, ``generate``
            keeps no scores at all.
    """
    tok = processor.tokenizer
    inputs = model_inputs(batch)
    end_ids = end_token_ids(model, tok)
    recorder = ChosenTokenLogprobs(settings.max_new_tokens) if logprobs else None
    with unsharded_root(model):  # FSDP2: generate runs the vision tower outside the model's forward
        out = model.generate(
            **inputs,
            **sampling_kwargs(settings, tok, end_ids),
            return_dict_in_generate=True,
            output_scores=logprobs,
            stopping_criteria=[recorder] if recorder is not None else None,
        )
    prompt_len = inputs["input_ids"].shape[1]
    ids = out.sequences[:, prompt_len:]
    mask = completion_mask(ids, end_ids)
    token_lp = recorder.token_logprobs(mask) if recorder is not None else None
    texts = tok.batch_decode(ids * mask + tok.pad_token_id * (1 - mask), skip_special_tokens=True)
    truncated = [not bool(torch.isin(row, torch.tensor(end_ids, device=row.device)).any()) for row in ids]
    return Completions(texts, ids, token_lp, mask, truncated)


def sampling_kwargs(settings: GenerationSettings, tokenizer, end_ids: list[int]) -> dict:
    """The ``model.generate`` arguments of ``settings``: length, sampling, samples per prompt,
    the blocked image tokens, the end and pad tokens."""
    return dict(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature if settings.do_sample else None,
        top_p=settings.top_p if settings.do_sample else None,
        top_k=settings.top_k if settings.do_sample else None,
        num_return_sequences=settings.num_samples,
        suppress_tokens=[tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS],
        eos_token_id=end_ids,
        pad_token_id=tokenizer.pad_token_id,
    )


class ChosenTokenLogprobs:
    """A ``transformers`` stopping criterion that never stops: at each step it keeps the chosen
    token's log-probability and frees that step's ``(rows, vocabulary)`` scores.

    ``generate(..., return_dict_in_generate=True, output_scores=True)`` appends each step's
    processed scores (after the logits processors: blocked tokens, temperature, top-k / top-p —
    what the token was sampled from) to a tuple and then calls the stopping criteria with the
    sequences so far (the chosen token last) and that tuple. A logits processor could not do
    this: ``transformers`` runs the caller's processors before temperature and top-k / top-p, and
    before the token is chosen. The criterion gathers ``log_softmax(scores[-1])`` at the chosen
    token (the value the whole stacked scores gave per step) into one ``(rows, max_steps)``
    buffer and empties the step's tensor in place (``Tensor.set_()``), so the tuple ``generate``
    returns holds only empty tensors. (One buffer rather than a small tensor per step: on CPU,
    small tensors kept between the freed vocabulary-sized blocks fragment the heap.)

    Args:
        max_steps: longest generation in steps (``max_new_tokens``); the buffer grows past it if
            ``generate`` takes more.

    >>> import torch
    >>> recorder = ChosenTokenLogprobs(max_steps=4)
    >>> step = torch.tensor([[0.0, 0.0], [0.0, float("-inf")]])  # row 1: token 1 filtered out
    >>> scores = (step,)
    >>> recorder(torch.tensor([[5, 0], [5, 0]]), scores).tolist()  # both rows chose token 0
    [False, False]
    >>> scores[0].numel()  # freed
    0
    >>> recorder.token_logprobs(torch.ones(2, 1, dtype=torch.long))
    tensor([[-0.6931],
            [ 0.0000]])
    """

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.values: torch.Tensor | None = None  # (rows, max_steps): the chosen tokens' log-probs so far
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: tuple[torch.Tensor, ...] | None, **kwargs) -> torch.Tensor:
        """Record the last step's chosen-token log-probs ``(rows,)``; stop nothing."""
        if not scores:
            raise RuntimeError(
                "ChosenTokenLogprobs needs generate(..., return_dict_in_generate=True, output_scores=True)"
            )
        last = scores[-1]
        if self.values is None or self.steps == self.values.shape[1]:
            more = torch.zeros(last.shape[0], max(self.max_steps - self.steps, 1), device=last.device)
            self.values = more if self.values is None else torch.cat([self.values, more], dim=1)
        chosen = input_ids[:, -1:].to(last.device)
        self.values[:, self.steps] = last.float().log_softmax(-1).gather(-1, chosen).squeeze(-1)
        self.steps += 1
        last.set_()  # the step's vocabulary-sized scores are no longer needed
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def token_logprobs(self, mask: torch.Tensor) -> torch.Tensor:
        """``(rows, T)`` log-probs of the recorded tokens: 0 where ``mask`` (the ``(rows, T)``
        completion mask) is 0, ``-1e4`` for a chosen token the scores had at ``-inf``.

        Steps past ``T`` (a step ``generate`` took back, e.g. its deferred stop check) are dropped.
        """
        if self.values is None:
            return torch.zeros(mask.shape, dtype=torch.float32)
        token_lp = self.values[:, : mask.shape[1]]
        return torch.nan_to_num(token_lp, neginf=-1e4) * mask.to(token_lp.device)


def char_offsets(tokenizer, token_ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token in the decoded text (for mapping label spans to tokens).

    Each token is decoded on its own; when those pieces join to the decoded text (plain ASCII
    answers), the spans are their running lengths. Otherwise (a multi-byte character split across
    tokens) the text of the first ``i + 1`` tokens is decoded for each ``i``, so such a character
    lands on the token that completes it.
    """
    pieces = tokenizer.batch_decode([[i] for i in token_ids], skip_special_tokens=True)
    if "".join(pieces) == tokenizer.decode(token_ids, skip_special_tokens=True):
        spans, end = [], 0
        for piece in pieces:
            spans.append((end, end + len(piece)))
            end += len(piece)
        return spans
    spans, prev = [], 0
    for i in range(len(token_ids)):
        end = len(tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, max(prev, end)))
        prev = max(prev, end)
    return spans


def end_token_ids(model, tok) -> list[int]:
    ids = {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}
    eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    return sorted(i for i in ids if i is not None and i >= 0)


def completion_mask(ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first end token of each row, 0 after."""
    is_end = torch.isin(ids, torch.tensor(end_ids, device=ids.device))
    after_end = (is_end.cumsum(dim=1) - is_end.long()) > 0
    return (~after_end).long()
