"""Rollout batches (images split and repeated per row, prompt + completion rows), the hf engine,
and the sampler's repeated serving of prompt batches."""

import pytest
import torch
from PIL import Image

from hoi_r1.generation import Completions
from hoi_r1.grpo_loss import per_token_logps
from hoi_r1.models import ModelSettings, load_model, load_processor
from hoi_r1.prompts import build_messages
from hoi_r1.rollout import RolloutSampling
from hoi_r1.rollout.batch import (
    RolloutBuffer, join_completions, micro_batch_rows, select_prompts, split_pixel_values, trim_completions,
)
from hoi_r1.rollout.hf import HFRolloutEngine
from hoi_r1.sampling import ResumableSampler


def _prompts(processor, sizes):
    """A left-padded generation batch of images of different sizes (different patch counts)."""
    images = [Image.new("RGB", size, color=(40 * i, 90, 200 - 30 * i)) for i, size in enumerate(sizes)]
    texts = [processor.apply_chat_template(build_messages(f"find pairs {'x ' * i}"), tokenize=False,
                                           add_generation_prompt=True) for i in range(len(sizes))]
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        return dict(processor(text=texts, images=images, padding=True, return_tensors="pt")), images, texts
    finally:
        tok.padding_side = side


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(ModelSettings(name_or_path=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(ModelSettings(name_or_path=str(tiny_model_dir))).eval()


def test_selected_rows_equal_a_batch_of_those_rows(processor):
    batch, images, texts = _prompts(processor, [(56, 56), (112, 56), (84, 112)])
    counts = batch["image_grid_thw"].prod(-1).tolist()
    assert len(set(counts)) == 3
    rows = [2, 0, 0, 1]  # repeats (the G copies) and reordering
    picked = select_prompts(batch, torch.tensor(rows))
    direct, _, _ = _prompts_of(processor, [images[i] for i in rows], [texts[i] for i in rows])
    assert torch.equal(picked["pixel_values"], direct["pixel_values"])
    assert torch.equal(picked["image_grid_thw"], direct["image_grid_thw"])
    assert torch.equal(picked["input_ids"], direct["input_ids"])  # the left padding is trimmed to the longest
    assert torch.equal(picked["attention_mask"], direct["attention_mask"])
    blocks = split_pixel_values(batch["pixel_values"], batch["image_grid_thw"])
    assert [len(b) for b in blocks] == counts
    with pytest.raises(ValueError, match="patch rows"):
        split_pixel_values(batch["pixel_values"][:-1], batch["image_grid_thw"])


def _prompts_of(processor, images, texts):
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        return dict(processor(text=texts, images=images, padding=True, return_tensors="pt")), images, texts
    finally:
        tok.padding_side = side


def test_micro_batch_log_probs_equal_one_row_at_a_time(processor, model):
    """Padding on both sides, per-row images and the logits/τ slice give every row the log-probs
    it has alone."""
    batch, _, _ = _prompts(processor, [(56, 56), (112, 56)])
    ids = torch.tensor([[11, 12, 13, 14], [15, 16, 0, 0], [17, 0, 0, 0], [18, 19, 20, 0]])
    mask = (torch.arange(4)[None] < torch.tensor([[4], [2], [1], [3]])).long()
    prompt_rows = torch.tensor([0, 0, 1, 1])

    def logps(rows):
        t_ids, t_mask = trim_completions(ids[rows], mask[rows])
        inputs = join_completions(select_prompts(batch, prompt_rows[rows]), t_ids, t_mask)
        with torch.no_grad():
            logits = model(**inputs, logits_to_keep=t_ids.shape[1] + 1).logits[:, :-1]
        return per_token_logps(logits, t_ids, temperature=0.7), t_mask

    together, t_mask = logps(torch.arange(4))
    assert together.shape == (4, 4)
    for r in range(4):
        alone, a_mask = logps(torch.tensor([r]))
        n = int(a_mask.sum())
        assert torch.allclose(together[r, :n], alone[0, :n], atol=1e-5), r


def test_micro_batches_and_buffer_state():
    assert micro_batch_rows(8, 2, 1) == slice(4, 8)
    with pytest.raises(ValueError, match="equal micro-batches"):
        micro_batch_rows(6, 4, 0)
    buffer = RolloutBuffer([3, 5], 3, 2, torch.zeros(6, 2, dtype=torch.long), torch.ones(6, 2), torch.arange(6.0), 12.0)
    assert buffer.prompt_rows(1).tolist() == [1, 1, 1]
    copy = RolloutBuffer.from_state_dict(buffer.state_dict())
    assert copy.image_ids == [3, 5] and torch.equal(copy.advantages, buffer.advantages) and copy.old_logp is None


def test_hf_engine_generates_groups_outside_gradient_checkpointing(processor, tiny_model_dir):
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir), gradient_checkpointing=True))
    batch, _, _ = _prompts(processor, [(56, 56), (112, 56)])
    seen = {}
    original = model.generate

    def spy(*args, **kwargs):
        seen["checkpointing"] = model.is_gradient_checkpointing
        seen["synced_gpus"] = kwargs.get("synced_gpus")
        return original(*args, **kwargs)

    model.generate = spy
    engine = HFRolloutEngine(model, processor, synced_gpus=True)
    out = engine.generate(batch, 3, RolloutSampling(max_new_tokens=5, temperature=0.9))
    assert isinstance(out, Completions) and len(out.texts) == 6 and out.token_ids.shape[0] == 6
    assert seen == {"checkpointing": False, "synced_gpus": True}
    assert model.is_gradient_checkpointing  # switched back on
    assert not engine.weights_stale


def test_sampler_serves_each_batch_repeatedly_and_resumes_exactly():
    full = list(ResumableSampler(10, seed=3, repeat=3, batch_size=4))
    assert len(full) == len(ResumableSampler(10, seed=3, repeat=3, batch_size=4)) == 2 * 4 * 3  # 2 full batches
    batches = [full[i : i + 4] for i in range(0, len(full), 4)]
    assert [b[0][3] for b in batches] == [0, 1, 2, 0, 1, 2]  # the serve index
    assert [t[0] for t in batches[0]] == [t[0] for t in batches[2]]  # the same prompts
    for cut in (4, 8, 12, 20):
        resumed = ResumableSampler(10, seed=3, repeat=3, batch_size=4)
        resumed.load_state_dict({"epoch": 0, "position": cut, "repeat": 3, "batch_size": 4})
        assert list(resumed) == full[cut:]
    with pytest.raises(ValueError, match="steps_per_generation"):
        ResumableSampler(10, repeat=2, batch_size=4).load_state_dict({"epoch": 0, "position": 4, "repeat": 3, "batch_size": 4})
    with pytest.raises(ValueError, match="no full batch"):
        ResumableSampler(3, repeat=2, batch_size=4)
    plain = ResumableSampler(10, seed=3)
    assert all(len(t) == 3 for t in plain)  # SFT tickets are unchanged
