"""Rollout batches (images split and repeated per row, prompt + completion rows), the hf engine,
and the sampler's repeated serving of prompt batches."""

import pytest
import torch
from helpers.rollout import left_padded, prompt_batch

from hoi_r1.generation import Completions
from hoi_r1.models import ModelSettings, load_model, load_processor
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.rollout.batch import RolloutBuffer, micro_batch_rows, select_prompts, split_pixel_values
from hoi_r1.rollout.hf import HFRolloutEngine
from hoi_r1.rollout.logprobs import can_share_prompts, completion_logps
from hoi_r1.sampling import ResumableSampler


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(str(tiny_model_dir))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(ModelSettings(name_or_path=str(tiny_model_dir))).eval()


def test_selected_rows_equal_a_batch_of_those_rows(processor):
    batch, images, texts = prompt_batch(processor, [(56, 56), (112, 56), (84, 112)])
    counts = batch["image_grid_thw"].prod(-1).tolist()
    assert len(set(counts)) == 3
    rows = [2, 0, 0, 1]  # repeats (the G copies) and reordering
    picked = select_prompts(batch, torch.tensor(rows))
    direct = left_padded(processor, [images[i] for i in rows], [texts[i] for i in rows])
    assert torch.equal(picked["pixel_values"], direct["pixel_values"])
    assert torch.equal(picked["image_grid_thw"], direct["image_grid_thw"])
    assert torch.equal(picked["input_ids"], direct["input_ids"])  # the left padding is trimmed to the longest
    assert torch.equal(picked["attention_mask"], direct["attention_mask"])
    blocks = split_pixel_values(batch["pixel_values"], batch["image_grid_thw"])
    assert [len(b) for b in blocks] == counts
    with pytest.raises(ValueError, match="patch rows"):
        split_pixel_values(batch["pixel_values"][:-1], batch["image_grid_thw"])


IDS = torch.tensor([[292, 310, 304, 234], [467, 96, 0, 0], [949, 0, 0, 0], [330, 86, 379, 0], [500, 501, 502, 503]])  # plain text tokens
LENGTHS = torch.tensor([[4], [2], [1], [3], [4]])


@pytest.mark.parametrize("share", [False, True], ids=["joined", "shared_prompts"])
def test_micro_batch_log_probs_equal_one_row_at_a_time(processor, model, share):
    """Padding on both sides, per-row images and the logits/τ slice give every row the log-probs
    it has alone, in both forward layouts."""
    batch, _, _ = prompt_batch(processor, [(56, 56), (112, 56), (84, 112)])
    mask = (torch.arange(4)[None] < LENGTHS).long()
    prompt_rows = torch.tensor([0, 0, 2, 2, 1])
    with torch.no_grad():
        together, t_mask = completion_logps(model, batch, prompt_rows, IDS, mask, 0.7, share_prompts=share)
        assert together.shape == (5, 4) and torch.equal(t_mask, mask)
        for r in range(5):
            alone, a_mask = completion_logps(model, batch, prompt_rows[r : r + 1], IDS[r : r + 1], mask[r : r + 1], 0.7,
                                             share_prompts=False)
            n = int(a_mask.sum())
            assert torch.allclose(together[r, :n], alone[0, :n], atol=1e-5), r


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_shared_prompt_pass_gives_the_joined_gradients(processor, tiny_model_dir, lora):
    from hoi_r1.models import LoraSettings

    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir), lora=LoraSettings(r=2, alpha=4) if lora else None))
    batch, _, _ = prompt_batch(processor, [(56, 56), (112, 56), (84, 112)])
    mask = (torch.arange(4)[None] < LENGTHS).long()
    prompt_rows = torch.tensor([0, 0, 2, 2, 1])
    assert can_share_prompts(model, batch)
    results = []
    for share in (False, True):
        model.zero_grad()
        logp, m = completion_logps(model, batch, prompt_rows, IDS, mask, 0.7, share_prompts=share)
        (logp * m * torch.linspace(-1, 1, 5)[:, None]).sum().backward()
        results.append((logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = results
    assert torch.allclose(a * mask, b * mask, atol=1e-5)
    assert ga.keys() == gb.keys() and ga
    for k in ga:
        assert torch.allclose(ga[k], gb[k], atol=1e-4, rtol=1e-4), k
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert not can_share_prompts(model, batch)  # checkpointing turns the cache off: the joined pass runs


def test_micro_batches_and_buffer_state():
    assert micro_batch_rows(8, 2, 1) == slice(4, 8)
    with pytest.raises(ValueError, match="equal micro-batches"):
        micro_batch_rows(6, 4, 0)
    buffer = RolloutBuffer([3, 5], 3, 2, torch.zeros(6, 2, dtype=torch.long), torch.ones(6, 2), torch.arange(6.0), 12.0)
    assert buffer.prompt_rows(1).tolist() == [1, 1, 1]
    copy = RolloutBuffer.from_state_dict(buffer.state_dict())
    assert copy.image_ids == [3, 5] and torch.equal(copy.advantages, buffer.advantages) and copy.old_logp is None
    kept = RolloutBuffer([3, 5, 8], 3, 2, torch.zeros(6, 2, dtype=torch.long), torch.ones(6, 2), torch.arange(6.0), 12.0,
                         prompts=[0, 2])  # dynamic sampling kept prompts 0 and 2 of three
    assert kept.prompt_rows(1).tolist() == [2, 2, 2] and RolloutBuffer.from_state_dict(kept.state_dict()).prompts == [0, 2]


def test_hf_engine_generates_groups_outside_gradient_checkpointing(processor, tiny_model_dir):
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir), gradient_checkpointing=True))
    batch, _, _ = prompt_batch(processor, [(56, 56), (112, 56)])
    seen = {}
    original = model.generate

    def spy(*args, **kwargs):
        seen["checkpointing"] = model.is_gradient_checkpointing
        seen["synced_gpus"] = kwargs.pop("synced_gpus", None)  # (one process: nothing to synchronise with)
        return original(*args, **kwargs)

    model.generate = spy
    engine = HFRolloutEngine(model, processor, synced_gpus=True)
    out = engine.generate(batch, 3, RolloutSampling(max_new_tokens=5, temperature=0.9))
    assert isinstance(out, Completions) and len(out.texts) == 6 and out.token_ids.shape[0] == 6
    assert seen == {"checkpointing": False, "synced_gpus": True}
    assert model.is_gradient_checkpointing  # switched back on
    assert not engine.weights_stale


def test_hf_engine_keeps_no_scores_unless_asked_and_then_the_sampled_tokens_logprobs(processor, model):
    """GRPO reads no sampler log-probs from the hf engine: by default ``generate`` keeps no scores
    and the completions carry none; ``logprobs=True`` returns them, bit for bit the same tokens."""
    batch, _, _ = prompt_batch(processor, [(56, 56), (112, 56)])
    sampling = RolloutSampling(max_new_tokens=5, temperature=0.9)
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["output_scores"])
        return original(*args, **kwargs)

    model.generate = spy
    try:
        torch.manual_seed(0)
        plain = HFRolloutEngine(model, processor).generate(batch, 2, sampling)
        torch.manual_seed(0)
        asked = HFRolloutEngine(model, processor, logprobs=True).generate(batch, 2, sampling)
    finally:
        del model.generate
    assert seen == [False, True] and plain.token_logprobs is None
    assert torch.equal(plain.token_ids, asked.token_ids) and plain.texts == asked.texts
    lp, mask = asked.token_logprobs, asked.mask.bool()
    assert lp.shape == asked.token_ids.shape and (lp[mask] < 0).all() and (lp[~mask] == 0).all()
    with torch.no_grad():  # the policy's log_softmax(logits / τ), over every token
        rows = torch.arange(2).repeat_interleave(2)
        policy, m = completion_logps(model, batch, rows, asked.token_ids, asked.mask, 0.9)
    gap = (lp[:, : m.shape[1]] - policy)[m.bool()]  # the sampler's distribution leaves out the blocked image tokens
    assert gap.min() > -1e-5 and gap.max() < 0.02

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
