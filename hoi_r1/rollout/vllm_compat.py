"""Every call into vLLM, in one place (written against vLLM 0.33; ``setup.cfg``'s extra pins ``vllm>=0.33``).

vLLM changes its Python surface between releases (the weight-transfer API changed in 0.28, the
V0 engine is gone, ``top_k`` switched its "disabled" value); when a release breaks something,
this module is the only one to change. The rest of :mod:`hoi_r1.rollout.vllm` sees plain Python:
token-id lists, log-prob lists and finish flags.

Facts used (vLLM docs and TRL 1.16's colocate mode, ``trl/generation/vllm_generation.py``):

* ``LLM(model, distributed_executor_backend="external_launcher", ...)`` runs the engine inside
  the calling process, one per rank, and reads ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``.
* ``mm_processor_kwargs={"min_pixels", "max_pixels"}`` gives vLLM's Qwen2.5-VL processor the
  resize limits of ours; ``limit_mm_per_prompt={"image": 1}``.
* ``logprobs_mode="processed_logprobs"``: returned log-probs are those of the distribution the
  token was sampled from (after temperature), the ones importance correction needs.
* ``SamplingParams(n, temperature, top_p, top_k, max_tokens, logprobs=0, stop_token_ids,
  logit_bias)``; ``logprobs=0`` returns the sampled token's log-prob only.
* Prompts: ``{"prompt_token_ids": [...], "multi_modal_data": {"image": PIL.Image}}``.
* Weights: ``llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(
  [(name, tensor)])`` with Hugging Face names, one tensor at a time, then
  ``llm.reset_prefix_cache()``; sleep mode: ``llm.sleep(level)`` / ``llm.wake_up(tags)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterable

import torch

INSTALL_HINT = 'pip install -e ".[vllm]"'
LOGIT_BLOCK = -100.0
"""Logit bias that blocks a token (vLLM clamps biases to [-100, 100])."""


def import_vllm():
    """The ``vllm`` module, or an error that says how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as e:
        raise ImportError(
            f"rollout engine 'vllm' needs vLLM, which is not installed ({e}). Install the extra with "
            f"`{INSTALL_HINT}` (Linux + NVIDIA GPU), or set model.init_args.engine: hf"
        ) from None


def build_llm(
    vllm,
    model: str,
    *,
    dtype: str,
    seed: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    enable_sleep_mode: bool,
    enable_prefix_caching: bool,
    enforce_eager: bool,
    min_pixels: int,
    max_pixels: int,
    trust_remote_code: bool,
):
    """A colocated, in-process ``vllm.LLM`` for this rank."""
    return vllm.LLM(
        model=model,
        dtype=dtype,
        seed=seed,
        tensor_parallel_size=1,
        distributed_executor_backend="external_launcher",
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_sleep_mode=enable_sleep_mode,
        enable_prefix_caching=enable_prefix_caching,
        enforce_eager=enforce_eager,
        mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
        limit_mm_per_prompt={"image": 1},
        logprobs_mode="processed_logprobs",
        trust_remote_code=trust_remote_code,
    )


def sampling_params(
    vllm,
    n: int,
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    max_tokens: int,
    stop_token_ids: list[int],
    blocked_token_ids: list[int],
    greedy: bool = False,
):
    """``SamplingParams`` of one generation call (``top_k = 0`` disables top-k in vLLM ≥ 0.10)."""
    return vllm.SamplingParams(
        n=n,
        temperature=0.0 if greedy else temperature,
        top_p=1.0 if greedy else top_p,
        top_k=0 if greedy else top_k,
        max_tokens=max_tokens,
        logprobs=0,
        stop_token_ids=stop_token_ids,
        logit_bias={int(t): LOGIT_BLOCK for t in blocked_token_ids},
        skip_special_tokens=True,
    )


@dataclass
class Sampled:
    """One sampled completion, as plain values.

    Args:
        token_ids: the completion's tokens (the end token included when it stopped on one).
        logprobs: the sampler's log-prob of each token (NaN where it gave none).
        truncated: it stopped at ``max_tokens``.
        prompt_token_ids: the prompt as the engine tokenised it (images expanded).
    """

    token_ids: list[int]
    logprobs: list[float]
    truncated: bool
    prompt_token_ids: list[int]


def generate(llm, prompts: list[dict[str, Any]], params) -> list[list[Sampled]]:
    """Run ``llm.generate`` and read every request's ``n`` completions."""
    outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
    out = []
    for request in outputs:
        group = []
        for c in request.outputs:
            ids = list(c.token_ids)
            lps = [_token_logprob(step, t) for step, t in zip(c.logprobs or [], ids)]
            lps += [float("nan")] * (len(ids) - len(lps))
            group.append(Sampled(ids, lps, c.finish_reason == "length", list(request.prompt_token_ids or [])))
        out.append(group)
    return out


def _token_logprob(step, token_id: int) -> float:
    """``step`` maps token id → ``Logprob`` (with ``.logprob``) for one position."""
    entry = step.get(token_id) if step else None
    value = getattr(entry, "logprob", entry)
    return float("nan") if value is None else float(value)


def load_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
    """Stream weights into the engine's model one tensor at a time; returns how many were sent."""
    model = llm.llm_engine.model_executor.driver_worker.model_runner.model
    count = 0
    for name, tensor in named_tensors:
        model.load_weights([(name, tensor)])
        count += 1
    return count


def reset_caches(llm) -> None:
    """Forget cached prefixes (computed with the old weights) and cached image encodings."""
    llm.reset_prefix_cache()
    reset_mm = getattr(llm, "reset_mm_cache", None)
    if reset_mm is not None:  # the multimodal encoder cache grows step after step in colocate mode
        reset_mm()


def sleep(llm, level: int) -> None:
    llm.sleep(level=level)


def wake_up(llm) -> None:
    llm.wake_up()
