"""Our side of the vllm engine's calls, against a fake ``vllm`` module that records them: engine
arguments, prompts, sampling parameters, outputs → Completions, the order of the weight-push
calls, sleep / wake (GPU-only, so fake only), the agreement check's logic, the missing-extra
error, and GRPO training through the engine. A fake proves only what we send it: the same
behaviours against the real engine (CPU build, tiny model) are in ``tests/test_vllm_real.py``
(``make test-vllm``)."""

import math
import sys
import types
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from PIL import Image

from hoi_r1.generation import IMAGE_TOKENS
from hoi_r1.models import LoraSettings, ModelSettings, load_model, load_processor
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.rollout.hf import HFRolloutEngine
from hoi_r1.rollout.policy_weights import policy_weights
from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings, collapse_image_tokens


class FakeLLM:
    """Records what the engine asks of ``vllm.LLM``; completions come from ``respond``."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[str] = []
        self.loaded: list[tuple[str, torch.Tensor]] = []
        self.pads_per_image: list[int] = []
        self.respond = lambda prompt_index, sample_index, params: ([300 + sample_index, 2], "stop")
        self.llm_engine = SimpleNamespace(reset_encoder_cache=lambda: self.calls.append("reset_encoder_cache"))
        FAKE.instances.append(self)

    def collective_rpc(self, method, kwargs):
        self.calls.append(method)
        self.loaded.extend(kwargs["weights_iterator"])

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append("generate")
        self.prompts, self.params = prompts, sampling_params
        out = []
        for i, prompt in enumerate(prompts):
            pad = FAKE.image_pad
            expanded = []
            for t in prompt["prompt_token_ids"]:  # vLLM expands the image placeholder from the image
                expanded += [pad] * self.pads_per_image[i] if t == pad else [t]
            samples = []
            for j in range(sampling_params.n):
                ids, reason = self.respond(i, j, sampling_params)
                logprobs = [{t: SimpleNamespace(logprob=-0.5)} for t in ids]
                samples.append(SimpleNamespace(token_ids=ids, logprobs=logprobs, finish_reason=reason))
            out.append(SimpleNamespace(prompt_token_ids=expanded, outputs=samples))
        return out

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def reset_mm_cache(self):
        self.calls.append("reset_mm_cache")

    def sleep(self, level):
        self.calls.append(f"sleep{level}")

    def wake_up(self):
        self.calls.append("wake_up")


FAKE = SimpleNamespace(instances=[], image_pad=None)


@pytest.fixture
def fake_vllm(monkeypatch, processor):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    module.__version__ = "0.33.0"
    monkeypatch.setitem(sys.modules, "vllm", module)
    gpu = SimpleNamespace(is_cpu=lambda: False, device_type="cuda")
    monkeypatch.setitem(sys.modules, "vllm.platforms", SimpleNamespace(current_platform=gpu))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)  # restored after the test
    FAKE.instances.clear()
    FAKE.image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return module


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(str(tiny_model_dir))


def _batch(processor, tmp_path, sizes=((56, 56), (112, 56))):
    from hoi_r1.prompts import build_messages
    from hoi_r1.sample import HOISample

    images, samples = [], []
    for i, size in enumerate(sizes):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", size, color=(50 * i, 100, 150)).save(path)
        images.append(Image.open(path).convert("RGB"))
        samples.append(HOISample(i, path.name, str(path), *size))
    texts = [processor.apply_chat_template(build_messages("find"), tokenize=False, add_generation_prompt=True)] * len(sizes)
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    finally:
        tok.padding_side = side
    batch["samples"] = samples
    return batch


def _engine(tiny_model_dir, processor, **settings):
    engine = VLLMRolloutEngine(str(tiny_model_dir), processor, VLLMSettings(**settings), rank=1, local_rank=1, world_size=2)
    return engine, FAKE.instances[-1]


def test_engine_is_built_colocated_with_our_resize_limits(fake_vllm, tiny_model_dir, processor):
    import os

    from hoi_r1.models import pixel_limits

    engine, llm = _engine(tiny_model_dir, processor, enable_sleep_mode=True, seed=5)
    lo, hi, _ = pixel_limits(processor.image_processor)
    kw = llm.kwargs
    assert kw["distributed_executor_backend"] == "external_launcher" and kw["enable_sleep_mode"] is True
    assert kw["mm_processor_kwargs"] == {"min_pixels": lo, "max_pixels": hi}
    assert kw["limit_mm_per_prompt"] == {"image": 1, "video": 0} and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["model"] == str(tiny_model_dir) and kw["seed"] == 6  # base seed + rank
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("1", "1", "2")
    assert engine.weights_stale  # built from disk: the policy must be pushed first


def test_generate_sends_collapsed_prompts_and_reads_outputs(fake_vllm, tiny_model_dir, processor, tmp_path):
    engine, llm = _engine(tiny_model_dir, processor, importance_correction="none")  # (top-p / top-k below)
    batch = _batch(processor, tmp_path)
    llm.pads_per_image = (batch["input_ids"] == FAKE.image_pad).sum(1).tolist()
    # prompt 0 stops on <|im_end|> (2) that vLLM returns, prompt 1 on one it leaves out; the second
    # sample of each runs to max_tokens
    llm.respond = lambda i, j, params: (([400, 401, 2] if i == 0 else [402, 403]) if j == 0 else [500] * params.max_tokens,
                                        "stop" if j == 0 else "length")
    out = engine.generate(batch, 2, RolloutSampling(max_new_tokens=4, temperature=0.8, top_p=0.9, top_k=5))
    p = llm.params
    assert (p.n, p.temperature, p.top_p, p.top_k, p.max_tokens, p.logprobs) == (2, 0.8, 0.9, 5, 4, 0)
    blocked = {processor.tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS}
    assert set(p.logit_bias) == blocked and all(v <= -100 for v in p.logit_bias.values())
    assert 2 in p.stop_token_ids  # <|im_end|>
    sent = llm.prompts[0]
    assert sent["prompt_token_ids"].count(FAKE.image_pad) == 1
    assert sent["multi_modal_data"]["image"].size == (56, 56)
    assert out.token_ids.tolist()[0] == [400, 401, 2, 0] and out.mask.tolist()[0] == [1, 1, 1, 0]
    assert out.token_ids.tolist()[2] == [402, 403, 2, 0] and out.mask.tolist()[2] == [1, 1, 1, 0]
    assert out.mask.tolist()[1] == [1, 1, 1, 1] and out.truncated == [False, True, False, True]
    assert out.token_logprobs[0].tolist() == [-0.5, -0.5, -0.5, 0.0]
    assert out.token_logprobs[2, 2].isnan()  # the appended end token: no sampler log-prob (weight 1)
    llm.pads_per_image = [n + 1 for n in llm.pads_per_image]
    with pytest.raises(RuntimeError, match="resize the image differently"):
        engine.generate(batch, 1, RolloutSampling(max_new_tokens=4))


def test_collapse_image_tokens():
    assert collapse_image_tokens([5, 9, 9, 9, 6], 9) == [5, 9, 6]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_policy_weights_have_hugging_face_names_and_merged_values(tiny_model_dir, lora):
    plain = dict(load_model(ModelSettings(name_or_path=str(tiny_model_dir))).named_parameters())
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir), lora=LoraSettings(r=2, alpha=4) if lora else None))
    if lora:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.fill_(0.05)
        expected = {k: v.detach().clone() for k, v in _merged_copy(model).named_parameters()}
    else:
        expected = plain
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    pushed = {k: v.clone() for k, v in policy_weights(model)}  # each tensor is valid until the next one
    assert pushed.keys() == plain.keys()
    for k, v in pushed.items():
        assert torch.allclose(v, expected[k], atol=1e-6), k
    for k, v in model.state_dict().items():  # merged out of place: the training weights are untouched
        assert torch.equal(v, before[k]), k


def test_lora_push_is_out_of_place_in_bf16(tiny_model_dir):
    """Pushing a bf16 LoRA model 100 times leaves every training weight bit for bit as it was (an
    in-place merge / unmerge in bf16 drifts), and each push is W + scale·B@A rounded once."""
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir), dtype="bfloat16", lora=LoraSettings(r=2, alpha=4)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for _ in range(100):
        pushed = {k: v.clone() for k, v in policy_weights(model)}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    layer = model.base_model.model.model.language_model.layers[0].self_attn.q_proj
    w, a, b = layer.base_layer.weight, layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = (w.float() + layer.scaling["default"] * (b.float() @ a.float())).to(torch.bfloat16)
    assert torch.equal(pushed["model.language_model.layers.0.self_attn.q_proj.weight"], expected)


def _merged_copy(model):
    import copy

    return copy.deepcopy(model).merge_and_unload()


def test_sync_sleep_and_wake(fake_vllm, tiny_model_dir, processor):
    engine, llm = _engine(tiny_model_dir, processor, enable_sleep_mode=True, sleep_level=2)
    engine.sync_weights([("a", torch.zeros(1)), ("b", torch.ones(2))])
    assert [n for n, _ in llm.loaded] == ["a", "b"] and not engine.weights_stale
    assert llm.calls[-4:] == ["reload_weights", "reset_encoder_cache", "reset_prefix_cache", "reset_mm_cache"]
    engine.sleep()
    engine.wake()
    assert llm.calls[-2:] == ["sleep2", "wake_up"] and engine.weights_stale  # level 2 dropped the weights
    engine.sleep()
    engine.sync_weights([("a", torch.zeros(1))])  # pushing wakes the engine first
    assert llm.calls[-5:] == ["wake_up", "reload_weights", "reset_encoder_cache", "reset_prefix_cache", "reset_mm_cache"]


def test_importance_correction_refuses_filtered_sampling(fake_vllm, tiny_model_dir, processor, tmp_path):
    engine, llm = _engine(tiny_model_dir, processor, importance_correction="token")
    for sampling in (RolloutSampling(4, top_p=0.9), RolloutSampling(4, top_k=5)):
        with pytest.raises(ValueError, match="importance_correction='token' needs unfiltered sampling"):
            engine.generate(_batch(processor, tmp_path), 1, sampling)
    assert "generate" not in llm.calls


@pytest.mark.parametrize("version, device, ok", [("0.33.0", "cuda", True), ("0.32.0", "cpu", True),
                                                 ("0.32.0", "cuda", False), ("0.34.0", "cuda", False)])
def test_release_check_of_each_build(version, device, ok):
    from hoi_r1.rollout.vllm_compat import check_version

    if ok:
        check_version(version, device)
    else:
        with pytest.raises(RuntimeError, match=f"vLLM {version} on {device}"):
            check_version(version, device)


def test_cpu_build_refuses_sleep_mode(fake_vllm, monkeypatch, tiny_model_dir, processor):
    cpu = SimpleNamespace(is_cpu=lambda: True, device_type="cpu")
    monkeypatch.setitem(sys.modules, "vllm.platforms", SimpleNamespace(current_platform=cpu))
    fake_vllm.__version__ = "0.32.0"
    with pytest.raises(ValueError, match="sleep mode is GPU-only"):
        _engine(tiny_model_dir, processor, enable_sleep_mode=True)


def test_greedy_agreement_check(fake_vllm, tiny_model_dir, processor, tmp_path):
    engine, llm = _engine(tiny_model_dir, processor, check_tokens=6)
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir))).eval()
    batch = _batch(processor, tmp_path)
    llm.pads_per_image = (batch["input_ids"] == FAKE.image_pad).sum(1).tolist()
    hf = HFRolloutEngine(model, processor).generate(batch, 1, RolloutSampling(max_new_tokens=6, greedy=True))
    rows = [hf.token_ids[i][hf.mask[i].bool()].tolist() for i in range(2)]
    llm.respond = lambda i, j, params: (rows[i], "length")
    engine.check_agreement(model, processor, batch)
    assert engine.checked and llm.params.temperature == 0.0
    llm.respond = lambda i, j, params: ([t + 1 for t in rows[i]], "length")
    with pytest.raises(RuntimeError, match="disagree"):
        engine.check_agreement(model, processor, batch)


def test_missing_vllm_names_the_extra(monkeypatch, tiny_model_dir, processor):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[vllm\]"'):
        VLLMRolloutEngine(str(tiny_model_dir), processor, VLLMSettings())


def test_grpo_trains_through_the_vllm_engine(fake_vllm, tiny_model_dir, synthetic_world, tmp_path):
    from helpers.grpo import ToyRewardGRPO

    from hoi_r1.datamodule import HOIDataModule, SplitFiles
    from hoi_r1.grpo_settings import GRPOLossSettings, RolloutSettings
    from hoi_r1.prompts import PromptConfig

    L.seed_everything(0)
    module = ToyRewardGRPO(
        model=ModelSettings(name_or_path=str(tiny_model_dir)), engine="vllm",
        vllm=VLLMSettings(check_agreement=False, enable_sleep_mode=True, importance_correction="token"),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
        rollout=RolloutSettings(num_generations=2, max_completion_length=6),
        loss=GRPOLossSettings(steps_per_generation=2), log_examples=0,
    )
    data = HOIDataModule(train=SplitFiles(str(synthetic_world / "train.json")), batch_size=2,
                         prompt=PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False))
    generator = torch.Generator().manual_seed(0)

    def respond(i, j, params):  # random text tokens, some cut at max_tokens
        length = int(torch.randint(1, params.max_tokens + 1, (1,), generator=generator))
        ids = torch.randint(300, 900, (length,), generator=generator).tolist()
        return (ids + [2], "stop") if length < params.max_tokens else (ids, "length")

    original_generate = FakeLLM.generate

    def generate(self, prompts, sampling_params, use_tqdm):  # vLLM's expansion: our processor's patch count
        ip = data.processor.image_processor
        self.pads_per_image = [
            int(ip(images=[p["multi_modal_data"]["image"]], return_tensors="pt")["image_grid_thw"].prod())
            // ip.merge_size**2
            for p in prompts
        ]
        self.respond = respond
        return original_generate(self, prompts, sampling_params, use_tqdm)

    FakeLLM.generate = generate
    try:
        trainer = L.Trainer(accelerator="cpu", max_steps=2, accumulate_grad_batches=2, limit_val_batches=0,
                            log_every_n_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=tmp_path)
        trainer.fit(module, datamodule=data)
    finally:
        FakeLLM.generate = original_generate
    llm = FAKE.instances[-1]
    pushes = llm.calls.count("reload_weights")
    assert pushes == 2  # before the first generation and after the first optimizer step
    assert llm.calls.count("generate") == 2 and llm.calls.count("sleep2") == 2
    m = trainer.callback_metrics
    assert math.isfinite(float(m["train/loss"])) and 0 < float(m["train/importance_weight"]) <= 3.0
    assert 0 < float(m["train/importance_ratio/min"]) <= float(m["train/importance_ratio/mean"]) <= float(m["train/importance_ratio/max"])
