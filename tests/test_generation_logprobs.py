"""Chosen-token log-probs of ``hoi_r1.generation.generate``, gathered step by step: equal to the
old full-vocabulary computation (every step's scores kept, stacked, log-softmaxed), and nothing
vocabulary-sized kept, asked or not."""

from pathlib import Path

import pytest
import torch
from helpers.rollout import left_padded
from PIL import Image

from hoi_r1.generation import (
    ChosenTokenLogprobs, GenerationSettings, completion_mask, end_token_ids, generate, model_inputs, sampling_kwargs,
)
from hoi_r1.models import ModelSettings, load_model, load_processor
from hoi_r1.prompts import build_messages
from hoi_r1.rollout.logprobs import completion_logps

T = 10
MODEL = Path(__file__).parents[1] / "checkpoints" / "tiny-qwen2_5_vl-grounding"  # trained: rows differ, some end


@pytest.fixture(scope="module")
def processor():
    return load_processor(str(MODEL))


@pytest.fixture(scope="module")
def model():
    return load_model(ModelSettings(name_or_path=str(MODEL))).eval()


@pytest.fixture(scope="module")
def batch(processor):
    """Three prompts of different lengths (left padding) and image sizes."""
    sizes = [(56, 56), (112, 56), (84, 112)]
    images = [Image.new("RGB", size, color=(40 * i, 90, 200 - 30 * i)) for i, size in enumerate(sizes)]
    texts = [processor.apply_chat_template(build_messages(f"find pairs {'x ' * 3 * i}"), tokenize=False,
                                           add_generation_prompt=True) for i in range(len(sizes))]
    out = left_padded(processor, images, texts)
    assert (out["attention_mask"] == 0).any()  # left padding
    return out


def full_vocabulary_generate(model, processor, batch, settings):
    """The old ``generate``: every step's scores kept (``output_scores=True``), stacked,
    log-softmaxed over the vocabulary, gathered at the chosen tokens."""
    tok = processor.tokenizer
    inputs = model_inputs(batch)
    end_ids = end_token_ids(model, tok)
    out = model.generate(
        **inputs,
        **sampling_kwargs(settings, tok, end_ids),
        return_dict_in_generate=True,
        output_scores=True,
    )
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]
    mask = completion_mask(ids, end_ids)
    logprobs = torch.stack(out.scores, dim=1).float().log_softmax(-1)
    token_lp = logprobs.gather(-1, ids[:, : logprobs.shape[1], None]).squeeze(-1)
    return ids, torch.nan_to_num(token_lp, neginf=-1e4) * mask, mask


SETTINGS = {
    "greedy": GenerationSettings(max_new_tokens=T),
    "sampled": GenerationSettings(max_new_tokens=T, do_sample=True, temperature=0.7, num_samples=2),
    "top_p_top_k": GenerationSettings(max_new_tokens=T, do_sample=True, temperature=1.3, top_p=0.8, top_k=40,
                                      num_samples=2),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_chosen_token_logprobs_equal_the_full_vocabulary_computation(model, processor, batch, name):
    settings = SETTINGS[name]
    torch.manual_seed(0)
    probe, _, _ = full_vocabulary_generate(model, processor, batch, settings)
    # an extra end token that the rows first write at different steps: rows that stop early,
    # padded after their end, next to longer rows
    extra = next(int(t) for t in probe[0, 1 : T - 1] if len({_first(row, int(t)) for row in probe}) > 1)
    config = model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = [*end_token_ids(model, processor.tokenizer), extra]
    try:
        torch.manual_seed(0)
        ids, old_lp, mask = full_vocabulary_generate(model, processor, batch, settings)
        torch.manual_seed(0)
        new = generate(model, processor, batch, settings, logprobs=True)
    finally:
        config.eos_token_id = saved
    lengths = mask.sum(dim=1)
    assert lengths.min() < lengths.max() == ids.shape[1]  # early stops, padding after them
    assert torch.equal(new.token_ids, ids) and torch.equal(new.mask, mask)
    assert torch.equal(new.token_logprobs, old_lp)  # bit for bit
    assert (new.token_logprobs[mask.bool()] <= 0).all() and (new.token_logprobs[~mask.bool()] == 0).all()
    if settings.do_sample:  # the distribution sampled from: log_softmax(logits / τ), renormalised after top-k / top-p
        rows = torch.arange(len(batch["input_ids"])).repeat_interleave(settings.num_samples)
        with torch.no_grad():
            unfiltered, m = completion_logps(model, batch, rows, ids, mask, settings.temperature, share_prompts=False)
        gap = (new.token_logprobs[:, : m.shape[1]] - unfiltered)[m.bool()]
        if settings.top_p < 1 or settings.top_k > 0:
            assert gap.min() > -1e-4 and gap.max() > 1e-2  # filtering moves mass onto the kept tokens
        else:
            assert gap.abs().max() < 1e-4


def _first(row: torch.Tensor, token: int) -> int:
    hits = (row == token).nonzero()
    return int(hits[0]) if len(hits) else len(row)


class _Spy:
    """The model, with every ``generate`` call's keyword arguments and output kept."""

    def __init__(self, model) -> None:
        self._model, self.calls = model, []

    def generate(self, **kwargs):
        out = self._model.generate(**kwargs)
        self.calls.append((kwargs, out))
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.mark.parametrize("asked", [False, True], ids=["not_asked", "asked"])
def test_nothing_vocabulary_sized_is_kept(model, processor, batch, asked):
    spy = _Spy(model)
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=2)
    out = generate(spy, processor, batch, settings, logprobs=asked)
    (kwargs, raw), = spy.calls
    assert raw.logits is None
    if asked:
        assert kwargs["output_scores"] and len(raw.scores) == out.token_ids.shape[1]
        assert all(s.numel() == 0 for s in raw.scores)  # each step's scores freed once its token was chosen
        assert out.token_logprobs.shape == out.token_ids.shape
    else:
        assert not kwargs["output_scores"] and raw.scores is None and kwargs["stopping_criteria"] is None
        assert out.token_logprobs is None
    vocab = model.config.get_text_config().vocab_size
    assert all(t is None or vocab not in t.shape for t in (out.token_ids, out.token_logprobs, out.mask))


def test_default_keeps_logprobs_for_the_callers_that_score_with_them(model, processor, batch):
    """``generate`` without the flag returns the log-probs as before (the ``logprob`` score)."""
    torch.manual_seed(1)
    default = generate(model, processor, batch, GenerationSettings(max_new_tokens=4))
    assert default.token_logprobs is not None and default.token_logprobs.shape == default.token_ids.shape


def test_recorder_drops_steps_generate_took_back_grows_and_needs_scores():
    recorder = ChosenTokenLogprobs(max_steps=2)
    for step in range(3):  # one step more than announced: the buffer grows
        scores = (torch.zeros(2, 4),)
        recorder(torch.tensor([[1, step], [1, step]]), scores)
    assert recorder.values.shape == (2, 3)
    lp = recorder.token_logprobs(torch.tensor([[1, 1], [1, 0]]))  # two tokens kept: the third step was undone
    assert torch.allclose(lp, torch.tensor([[-1.3863, -1.3863], [-1.3863, 0.0]]), atol=1e-4)
    assert torch.equal(ChosenTokenLogprobs(2).token_logprobs(torch.ones(2, 2)), torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="output_scores=True"):
        recorder(torch.tensor([[0, 1], [0, 1]]), None)


@pytest.mark.slow
def test_memory_benchmark_runs_small_and_agrees():
    """``benchmarks/generation_memory_benchmark.py`` end to end, small: the three ways sample the
    same tokens, ``chosen`` has the old log-probs, and the kept scores show in the old way's peak."""
    # here, not at the top: `benchmarks` imports only with the root on sys.path (python -m pytest)
    from benchmarks.generation_memory_benchmark import GenerationMemorySettings, run

    report = run(GenerationMemorySettings(prompts=2, max_new_tokens=64))  # ≈ 1 min on 2 cores
    assert report["checks"] == {"same_tokens": True, "max_abs_logprob_diff": 0.0, "none_has_logprobs": False}
    peaks = {m: r["generation_peak_mib"] for m, r in report["results"].items()}
    copy_mib = 2 * 64 * 151_936 * 4 / 2**20  # every step's scores of the 2 rows, fp32: 74 MiB
    assert peaks["full_scores"] - peaks["chosen"] > copy_mib  # (peaks, not sums: the prefill's transients overlap)
