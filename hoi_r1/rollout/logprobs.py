"""Log-probabilities of sampled completions under a policy: the forward passes of GRPO (the
policy with gradient, and the old and reference policies without).

Two ways, with the same result (tested equal, values and gradients):

* **joined**: every row is its prompt followed by its completion, ``[pad…prompt][completion…pad]``,
  one forward of ``R × (L + T)`` tokens (TRL's way);
* **shared prompts** (default): the ``G`` completions of a prompt share it, and a prompt with an
  image is most of the sequence (HICO prompts list the vocabulary: hundreds of tokens, plus the
  image's). Each distinct prompt of the micro-batch is run once (``K × L`` tokens, images
  included) with the cache on; its keys and values are indexed out to the ``R`` rows (indexing
  is differentiable, so the gradient of all ``G`` copies flows back into the one prompt pass);
  the completions then run on top of that cache (``R × T`` tokens) with their multimodal
  rotary positions continued from each prompt's last position. Causal attention makes the
  prompt's keys and values independent of what follows, so the logits are the joined ones.
  Used when the model is a Qwen2/2.5-VL-style model (``get_rope_index``) without gradient
  checkpointing (checkpointing turns the cache off); otherwise the joined pass runs.

Logits are divided by the sampling temperature before the log-softmax (:func:`per_token_logps`).
"""

from __future__ import annotations

import torch

from hoi_r1.grpo_loss import per_token_logps
from hoi_r1.rollout.batch import join_completions, select_prompts, trim_completions


def completion_logps(
    model, batch: dict, prompt_rows: torch.Tensor, completion_ids: torch.Tensor, completion_mask: torch.Tensor,
    temperature: float, share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, T)`` log-probs of the completion tokens and their ``(R, T)`` mask (trailing padding trimmed).

    Args:
        model: the policy (Hugging Face or peft model).
        batch: the generation batch (left-padded prompts and their images).
        prompt_rows: ``(R,)`` the prompt of each completion row.
        completion_ids: ``(R, T)`` sampled tokens.
        completion_mask: ``(R, T)`` 1 on real completion tokens.
        temperature: the sampling temperature ``τ``.
        share_prompts: run each distinct prompt once (see the module docstring) when possible.
    """
    ids, mask = trim_completions(completion_ids, completion_mask)
    if share_prompts and can_share_prompts(model, batch):
        logits = _shared_prompt_logits(model, batch, prompt_rows, ids, mask)
    else:
        inputs = join_completions(select_prompts(batch, prompt_rows), ids, mask)
        logits = model(**inputs, logits_to_keep=ids.shape[1] + 1, use_cache=False).logits[:, :-1]
    return per_token_logps(logits, ids, temperature), mask


def can_share_prompts(model, batch: dict) -> bool:
    """A model whose multimodal rotary positions we can continue, and a cache we may use."""
    if getattr(model, "is_gradient_checkpointing", False):
        return False
    return {"image_grid_thw", "mm_token_type_ids"} <= set(batch) and hasattr(_vl_model(model), "get_rope_index")


def _vl_model(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "model", base)


def _shared_prompt_logits(model, batch: dict, prompt_rows: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """``(R, T, V)`` logits predicting each completion token, each distinct prompt computed once."""
    unique, row_to_prompt = torch.unique(prompt_rows, return_inverse=True)
    prompts = select_prompts(batch, unique)  # K distinct prompts
    positions, _ = _vl_model(model).get_rope_index(
        prompts["input_ids"], prompts["mm_token_type_ids"], image_grid_thw=prompts["image_grid_thw"],
        attention_mask=prompts["attention_mask"],
    )  # (3, K, L)
    out = model(**prompts, position_ids=positions, use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1:][row_to_prompt.to(out.logits.device)]  # (R, 1, V): predicts completion token 0
    if ids.shape[1] == 1:
        return first
    cache = out.past_key_values
    cache.batch_select_indices(row_to_prompt.to(positions.device))  # K → R rows (differentiable indexing)
    start = positions.amax(dim=(0, 2))[row_to_prompt.to(positions.device)] + 1  # (R,) next text position
    steps = torch.arange(ids.shape[1] - 1, device=positions.device)
    text_positions = (start[:, None] + steps[None]).unsqueeze(0).expand(3, -1, -1)  # (3, R, T-1)
    prompt_mask = prompts["attention_mask"][row_to_prompt.to(positions.device)]
    attention = torch.cat([prompt_mask, mask[:, :-1].to(prompt_mask.dtype)], dim=1)
    rest = model(input_ids=ids[:, :-1], attention_mask=attention, position_ids=text_positions,
                 past_key_values=cache, use_cache=True).logits  # (R, T-1, V): predict tokens 1..T-1
    return torch.cat([first, rest], dim=1)
