"""The ``vllm`` rollout engine: a colocated ``vllm.LLM`` on each rank (GPU; the CPU build for tests).

How it works (TRL 1.16's colocate mode for the facts; docs/vllm.md):

1. **Build**: one in-process engine per rank (``external_launcher``), which reads ``RANK``,
   ``LOCAL_RANK`` and ``WORLD_SIZE`` — Lightning's launcher does not set ``RANK``, so the engine
   sets them from the trainer. Its image processor gets our ``min_pixels`` / ``max_pixels``, and
   every generation checks that vLLM expanded each image into as many tokens as our processor
   did (same resize, or a clear error).
2. **Prompts**: our left-padded prompt ids with the expanded image span collapsed back to one
   ``<|image_pad|>`` (:func:`collapse_image_tokens`; vLLM expands it itself) and the image from
   disk; image placeholder tokens are blocked in sampling (logit bias).
3. **Weights**: the engine starts from the checkpoint on disk, so the module pushes the policy's
   weights before the first generation, after every optimizer step (lazily, before the next
   generation), after resuming, and after waking from sleep level 2 (which discards them);
   :func:`~hoi_r1.rollout.policy_weights.policy_weights` yields them one tensor at a time under
   Hugging Face names (LoRA merged out of place, the training weights untouched); the engine
   loads them with vLLM's ``reload_weights`` and forgets its encoder and prefix caches
   (:func:`~hoi_r1.rollout.vllm_compat.push_weights`).
4. **Log-probs**: vLLM's processed log-probs (after temperature) come back with the tokens;
   GRPO can correct the sampler mismatch with truncated importance weights
   (:func:`hoi_r1.grpo_loss.truncated_importance_weights`). vLLM's log-probs are after top-k /
   top-p, ours are not, so the correction refuses ``top_p < 1`` and ``top_k > 0``
   (:func:`check_importance_sampling`).
5. **Check**: :meth:`VLLMRolloutEngine.check_agreement` compares greedy HF and vLLM outputs on
   the first batch, once.

Tested against a real vLLM (the CPU build, 0.32) with the tiny model by ``make test-vllm``
(``tests/test_vllm_real.py``, marker ``vllm``; docs/vllm.md says what ran and what did not);
the default suite only has the fake ``vllm`` module of ``tests/test_rollout_vllm.py``, which
checks our side of the calls. All version-specific calls are in :mod:`hoi_r1.rollout.vllm_compat`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Literal

import torch

from hoi_r1.generation import IMAGE_TOKENS, Completions
from hoi_r1.image_dataset import load_image
from hoi_r1.models import pixel_limits
import hoi_r1.rollout.vllm_compat as vllm_compat
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.rollout.hf import HFRolloutEngine

SleepLevel = Literal[1, 2]


@dataclass
class VLLMSettings:
    """The colocated vLLM engine (``engine: vllm``).

    Args:
        gpu_memory_utilization: share of the GPU's memory vLLM may take (weights + KV cache);
            the rest is the trainer's. (vLLM's CPU build: the KV cache is sized by
            ``VLLM_CPU_KVCACHE_SPACE`` GiB instead, 1 unless set.)
        max_model_len: longest prompt + completion in tokens (``None``: the model's).
        max_num_seqs: most sequences decoded at once (``None``: vLLM's default).
        max_num_batched_tokens: tokens per engine step (TRL uses 4096 to keep vLLM's memory
            profiler from over-reserving).
        dtype: weights and activations of the engine (``auto``: the checkpoint's).
        enable_sleep_mode: free vLLM's memory between generations (weights re-pushed after
            waking from level 2). GPU only: refused on vLLM's CPU build.
        sleep_level: 1 keeps the weights in CPU memory, 2 discards them.
        enable_prefix_caching: share the KV cache of the G copies of a prompt.
        enforce_eager: no CUDA graphs (slower, less memory, quicker start).
        seed: base seed of vLLM's sampler (plus the rank).
        importance_correction: ``token`` / ``sequence``: multiply the policy loss by truncated
            importance weights ``min(exp(old - vllm), cap)`` per token / per sequence;
            ``token_mask`` / ``sequence_mask``: by ``exp(old - vllm)``, 0 above the cap (TRL 1.16's
            default is ``sequence_mask``); ``none`` trusts vLLM's samples.
            Needs ``top_p = 1`` and ``top_k = 0`` (vLLM's log-probs are after that filtering).
        importance_cap: the cap ``C`` of the importance weights.
        check_agreement: at the first generation, compare greedy HF and vLLM outputs.
        check_tokens: tokens compared by that check.
    """

    gpu_memory_utilization: float = 0.3
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = 4096
    dtype: str = "auto"
    enable_sleep_mode: bool = False
    sleep_level: SleepLevel = 2
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    seed: int = 0
    importance_correction: Literal["none", "token", "sequence", "token_mask", "sequence_mask"] = "token"
    importance_cap: float = 3.0
    check_agreement: bool = True
    check_tokens: int = 16


torch.serialization.add_safe_globals([VLLMSettings])  # read back from checkpoints


class VLLMRolloutEngine:
    """Sample completions with a colocated ``vllm.LLM``.

    Args:
        name_or_path: the model the engine loads first (weights are pushed over it).
        processor: our processor (pad / end tokens, image-token ids, resize limits).
        settings: :class:`VLLMSettings`.
        rank, local_rank, world_size: this process in the trainer's world.
        trust_remote_code: passed to vLLM.
    """

    def __init__(
        self, name_or_path: str, processor, settings: VLLMSettings, rank: int = 0, local_rank: int = 0,
        world_size: int = 1, trust_remote_code: bool = False,
    ) -> None:
        self.vllm = vllm_compat.import_vllm()
        self.processor = processor
        self.settings = settings
        tok = processor.tokenizer
        self.image_pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self.blocked_ids = [tok.convert_tokens_to_ids(t) for t in IMAGE_TOKENS]
        self.end_ids = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
        for key, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world_size)):
            os.environ[key] = str(value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        # one process: any free port (two single-device runs on a machine must not collide);
        # several ranks: the launcher's port, or one fixed default they all agree on
        os.environ.setdefault("MASTER_PORT", str(_free_port()) if world_size == 1 else "29533")
        lo, hi, _ = pixel_limits(processor.image_processor)
        self.llm = vllm_compat.build_llm(
            self.vllm, name_or_path, dtype=settings.dtype, seed=settings.seed + rank,
            gpu_memory_utilization=settings.gpu_memory_utilization, max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=settings.max_num_batched_tokens,
            enable_sleep_mode=settings.enable_sleep_mode, enable_prefix_caching=settings.enable_prefix_caching,
            enforce_eager=settings.enforce_eager, min_pixels=lo, max_pixels=hi, trust_remote_code=trust_remote_code,
        )
        self.weights_stale = True  # built from the checkpoint on disk, not from the policy
        self.asleep = False
        self.checked = not settings.check_agreement

    # ------------------------------------------------------------------ generation
    def generate(self, batch: dict, n: int, sampling: RolloutSampling) -> Completions:
        check_importance_sampling(self.settings.importance_correction, sampling)
        prompts = self.prompts(batch)
        params = vllm_compat.sampling_params(
            self.vllm, n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens, stop_token_ids=self.end_ids, blocked_token_ids=self.blocked_ids,
            greedy=sampling.greedy,
        )
        groups = vllm_compat.generate(self.llm, prompts, params)
        expected = (batch["input_ids"] == self.image_pad_id).sum(dim=1).tolist()
        for i, group in enumerate(groups):
            got = sum(t == self.image_pad_id for t in group[0].prompt_token_ids) if group else 0
            if group and group[0].prompt_token_ids and got != expected[i]:
                raise RuntimeError(
                    f"{batch['samples'][i].file_name}: vLLM expanded the image into {got} tokens, our processor into "
                    f"{expected[i]}: the two resize the image differently (check min_pixels / max_pixels)"
                )
        return completions_from_samples([s for g in groups for s in g], self.processor.tokenizer, self.end_ids)

    def prompts(self, batch: dict) -> list[dict]:
        """vLLM prompt dicts: our prompt ids (image span collapsed) and the decoded image."""
        out = []
        for ids, mask, sample in zip(batch["input_ids"], batch["attention_mask"], batch["samples"]):
            tokens = collapse_image_tokens(ids[mask.bool()].tolist(), self.image_pad_id)
            out.append({"prompt_token_ids": tokens, "multi_modal_data": {"image": load_image(sample.image_path)}})
        return out

    def check_agreement(self, model, processor, batch: dict) -> None:
        """Greedy completions of HF ``model`` and of vLLM must agree (first ``check_tokens`` tokens)."""
        greedy = RolloutSampling(max_new_tokens=self.settings.check_tokens, greedy=True)
        ours = HFRolloutEngine(model, processor).generate(batch, 1, greedy)
        theirs = self.generate(batch, 1, greedy)
        for i in range(len(ours.texts)):
            a = ours.token_ids[i][ours.mask[i].bool()].tolist()
            b = theirs.token_ids[i][theirs.mask[i].bool()].tolist()
            k = min(len(a), len(b))
            if a[:k] != b[:k]:
                raise RuntimeError(
                    "vLLM and the training model disagree on a greedy completion (weights not synchronised, or "
                    f"different image preprocessing):\n  hf:   {ours.texts[i]!r}\n  vllm: {theirs.texts[i]!r}"
                )
        self.checked = True

    # ------------------------------------------------------------------ weights and memory
    def sync_weights(self, named_tensors) -> None:
        if self.asleep:
            self.wake()
        vllm_compat.push_weights(self.llm, named_tensors)
        self.weights_stale = False

    def sleep(self) -> None:
        if self.settings.enable_sleep_mode and not self.asleep:
            vllm_compat.sleep(self.llm, self.settings.sleep_level)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            vllm_compat.wake_up(self.llm)
            self.asleep = False
            if self.settings.sleep_level == 2:
                self.weights_stale = True  # level 2 discarded them; vLLM's reload_weights would read the disk


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_importance_sampling(correction: str, sampling: RolloutSampling) -> None:
    """Importance correction compares vLLM's log-probs (after top-k / top-p) with the trainer's
    (``log_softmax(logits / τ)``, unfiltered): refuse the sampling where the two differ.

    >>> check_importance_sampling("token", RolloutSampling(8, top_p=1.0, top_k=0))
    >>> check_importance_sampling("none", RolloutSampling(8, top_p=0.9))
    >>> check_importance_sampling("token", RolloutSampling(8, top_k=20))
    Traceback (most recent call last):
    ...
    ValueError: vllm.importance_correction='token' needs unfiltered sampling (rollout.top_p = 1, rollout.top_k = 0), found top_p=1.0, top_k=20: vLLM's log-probs are after top-k / top-p, the trainer's are not, so exp(old - vllm) would be biased; set importance_correction: none or drop the filtering
    """
    if correction == "none" or sampling.greedy or (sampling.top_p >= 1.0 and sampling.top_k <= 0):
        return
    raise ValueError(
        f"vllm.importance_correction={correction!r} needs unfiltered sampling (rollout.top_p = 1, rollout.top_k = 0), "
        f"found top_p={sampling.top_p}, top_k={sampling.top_k}: vLLM's log-probs are after top-k / top-p, the "
        "trainer's are not, so exp(old - vllm) would be biased; set importance_correction: none or drop the filtering"
    )


def collapse_image_tokens(ids: list[int], image_pad_id: int) -> list[int]:
    """Replace each run of ``image_pad_id`` with a single one (vLLM expands it from the image).

    >>> collapse_image_tokens([1, 7, 7, 7, 2, 7, 3], image_pad_id=7)
    [1, 7, 2, 7, 3]
    """
    out: list[int] = []
    for t in ids:
        if t == image_pad_id and out and out[-1] == image_pad_id:
            continue
        out.append(t)
    return out


def completions_from_samples(samples: list, tokenizer, end_ids: list[int]) -> Completions:
    """:class:`~hoi_r1.generation.Completions` from :class:`~hoi_r1.rollout.vllm_compat.Sampled` lists.

    Rows are right-padded with the pad id; the mask covers the tokens up to and including the
    first end token; log-probs are 0 on padding, NaN where vLLM gave none. A completion that
    stopped on an end token which vLLM left out of its tokens (special stop tokens) gets
    ``end_ids[0]`` appended, so that training sees the end of the turn as the ``hf`` engine's
    completions show it.
    """
    samples = [_with_end(s, end_ids) for s in samples]
    width = max([len(s.token_ids) for s in samples] + [1])
    pad = tokenizer.pad_token_id
    ids = torch.full((len(samples), width), pad, dtype=torch.long)
    logprobs = torch.zeros((len(samples), width), dtype=torch.float32)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    truncated = []
    for row, s in enumerate(samples):
        length = len(s.token_ids)
        ends = [i for i, t in enumerate(s.token_ids) if t in end_ids]
        used = ends[0] + 1 if ends else length
        ids[row, :length] = torch.tensor(s.token_ids, dtype=torch.long)
        logprobs[row, :used] = torch.tensor(s.logprobs[:used], dtype=torch.float32)
        mask[row, :used] = 1
        truncated.append(not ends)
    texts = tokenizer.batch_decode(ids * mask + pad * (1 - mask), skip_special_tokens=True)
    return Completions(texts, ids, logprobs, mask, truncated)


def _with_end(sample: vllm_compat.Sampled, end_ids: list[int]) -> vllm_compat.Sampled:
    if sample.truncated or any(t in end_ids for t in sample.token_ids):
        return sample
    return vllm_compat.Sampled(sample.token_ids + [end_ids[0]], sample.logprobs + [float("nan")], False,
                               sample.prompt_token_ids)
