"""Generate → parse → score → HOI-mAP, the evaluation the modules share."""

import math

import pytest
import torch
from transformers import AutoProcessor

import hoi_r1.hoi_evaluation as hoi_evaluation
from hoi_r1.answer import parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.generation import Completions, GenerationSettings, char_offsets
from hoi_r1.grounding import render_grounding_answer
from hoi_r1.hoi_evaluation import EvaluationSettings, GroundingEvaluation, HOIEvaluation
from hoi_r1.readers import read_annotations


@pytest.fixture(scope="module")
def world(synthetic_world):
    return read_annotations(synthetic_world / "test.json")


def _batch(samples):
    frames = [Frame.for_image("absolute_resized", s.width, s.height, 3136, 12544) for s in samples]
    return {"samples": samples, "frames": frames}


def _completions(processor, texts, logprob_of=lambda piece: -0.1):
    tok = processor.tokenizer
    rows = [tok.encode(t + "<|im_end|>", add_special_tokens=False) for t in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    lps = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        lps[i, : len(row)] = torch.tensor([logprob_of(tok.decode([t])) for t in row])
    return Completions(list(texts), ids, lps, mask, [False] * len(rows))


def test_perfect_answers_score_full_map(world, tiny_model_dir, monkeypatch):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    samples = world.samples[:6]
    batch = _batch(samples)
    texts = [render_answer(s, world.vocab, f) for s, f in zip(samples, batch["frames"])]
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: _completions(processor, texts))
    evaluation = HOIEvaluation(world.vocab, EvaluationSettings(protocol="pocket"))
    parsed = evaluation.step(None, processor, batch, GenerationSettings())
    assert all(p.structure_ok for p in parsed)
    values = evaluation.compute()
    present = {int(h) for s in samples for h in s.hoi_ids}
    assert values["parse_rate"] == values["format_rate"] == 1.0
    # pocket counts classes without test pairs as AP 0 in Full: every present class has AP 1
    assert math.isclose(values["mAP_full"], len(present) / world.vocab.num_classes)
    assert values["pairs_per_image"] == sum(len(s.grouped_pairs()) for s in samples) / len(samples)


def test_padded_duplicates_count_once_and_reset_forgets(world, tiny_model_dir, monkeypatch):
    """A DistributedSampler pads uneven splits with repeats of the first images: the parse
    statistics, like the mAP, count each image id once."""
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    samples = world.samples[:3]
    batch = _batch(samples)
    texts = [render_answer(samples[0], world.vocab, batch["frames"][0]), "garbage", "<think>cut"]
    completions = _completions(processor, texts)
    completions.truncated[2] = True
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: completions)
    evaluation = HOIEvaluation(world.vocab, EvaluationSettings())
    evaluation.step(None, processor, batch, GenerationSettings())
    once = evaluation.compute()
    assert once["parse_rate"] == 1 / 3 and once["truncation_rate"] == 1 / 3
    assert once["pairs_per_image"] == len(samples[0].grouped_pairs()) / 3
    padded = _batch(samples[:1])  # image 0 again, as the padding of another rank
    evaluation.update([parse_answer(texts[0], world.vocab, padded["frames"][0])], padded)
    assert evaluation.compute() == pytest.approx(once, nan_ok=True)
    evaluation.reset()
    evaluation.update([parse_answer("garbage", world.vocab, padded["frames"][0])], padded)
    assert evaluation.compute()["parse_rate"] == 0.0 and evaluation.compute()["pairs_per_image"] == 0.0


def test_grounding_counts_entities(world, tiny_model_dir, monkeypatch):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    samples = world.samples[:2]
    batch = _batch(samples)
    texts = [render_grounding_answer(samples[0], world.vocab, batch["frames"][0]), "nothing"]
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: _completions(processor, texts))
    evaluation = GroundingEvaluation(world.vocab, EvaluationSettings())
    evaluation.step(None, processor, batch, GenerationSettings())
    entities = [len(s.human_boxes) + len(s.object_boxes) for s in samples]
    values = evaluation.compute()
    assert values["grounding_precision"] == 1.0
    assert values["grounding_recall"] == entities[0] / sum(entities)
    assert values["entities_per_image"] == entities[0] / 2
    evaluation.reset()
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: _completions(processor, ["nothing"]))
    evaluation.step(None, processor, _batch(samples[1:]), GenerationSettings())
    assert evaluation.compute() == {"grounding_precision": 0.0, "grounding_recall": 0.0, "entities_per_image": 0.0}


def test_logprob_scores_average_the_label_tokens(world, tiny_model_dir, monkeypatch):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sample = next(s for s in world.samples if len(s.grouped_pairs()) >= 2)
    batch = _batch([sample])
    text = render_answer(sample, world.vocab, batch["frames"][0])
    # label tokens (object and verb names) get log-prob -1, everything else -0.01
    names = {n.replace("_", " ") for n in (*world.vocab.objects, *world.vocab.verbs)}
    words = {w for n in names for w in n.split()}
    fake = _completions(processor, [text], lambda piece: -1.0 if piece.strip() in words else -0.01)
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: fake)
    evaluation = HOIEvaluation(world.vocab, EvaluationSettings(scores="logprob"))
    (parsed,) = evaluation.step(None, processor, batch, GenerationSettings())
    assert [round(t.score, 6) for t in parsed.triplets] == [round(math.exp(-1.0), 6)] * len(parsed.triplets)


def test_element_scores_average_every_token_of_the_element(world, tiny_model_dir, monkeypatch):
    """Label tokens at -1, the first element's box digits at -3, the rest at -0.01: the label
    score sees only the labels; the element score sees the first element's uncertain boxes."""
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sample = next(s for s in world.samples if len(s.grouped_pairs()) >= 2)
    batch = _batch([sample])
    text = render_answer(sample, world.vocab, batch["frames"][0])
    tok = processor.tokenizer
    first = parse_answer(text, world.vocab, batch["frames"][0]).element_spans[0]
    names = {n.replace("_", " ") for n in (*world.vocab.objects, *world.vocab.verbs)}
    words = {w for n in names for w in n.split()}
    ids = tok.encode(text + "<|im_end|>", add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    values = []
    for (a, b) in offsets:
        piece = text[a:b]
        if piece.strip() in words:
            values.append(-1.0)
        elif first[0] <= a and b <= first[1] and piece.strip().isdigit():
            values.append(-3.0)
        else:
            values.append(-0.01)
    fake = _completions(processor, [text])
    fake.token_logprobs[0, : len(values)] = torch.tensor(values)
    monkeypatch.setattr(hoi_evaluation, "generate", lambda *a, **k: fake)
    label = HOIEvaluation(world.vocab, EvaluationSettings(scores="logprob")).step(None, processor, batch, GenerationSettings())[0]
    element = HOIEvaluation(world.vocab, EvaluationSettings(scores="logprob_element")).step(None, processor, batch, GenerationSettings())[0]
    assert [round(t.score, 6) for t in label.triplets] == [round(math.exp(-1.0), 6)] * len(label.triplets)
    expected = []
    for t in element.triplets:
        start, end = element.element_spans[t.element]
        inside = [v for (a, b), v in zip(offsets, values) if a < end and start < b]
        expected.append(round(math.exp(sum(inside) / len(inside)), 6))
    assert [round(t.score, 6) for t in element.triplets] == expected
    assert expected[0] < min(expected[1:])  # the uncertain boxes rank the first element last


def test_vote_scores_count_agreeing_samples(world, tiny_model_dir, monkeypatch):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sample = next(s for s in world.samples if len(s.grouped_pairs()) >= 2)
    batch = _batch([sample])
    full = render_answer(sample, world.vocab, batch["frames"][0])
    first_pair = (sample.pairs[:, :2] == sample.pairs[0, :2]).all(axis=1)
    only_first = render_answer(sample.with_pairs(first_pair), world.vocab, batch["frames"][0])
    calls = []

    def fake_generate(model, processor_, batch_, settings, logprobs=True):
        calls.append(settings)
        assert not logprobs  # vote scores read no log-probabilities
        if settings.num_samples == 1:
            return _completions(processor, [full])
        return _completions(processor, [full, only_first, only_first, "garbage"])

    monkeypatch.setattr(hoi_evaluation, "generate", fake_generate)
    evaluation = HOIEvaluation(world.vocab, EvaluationSettings(scores="vote", vote_samples=4))
    (parsed,) = evaluation.step(None, processor, batch, GenerationSettings())
    assert calls[1].do_sample and calls[1].num_samples == 4
    scores = [t.score for t in parsed.triplets]
    # answers: the greedy one, then full, only-first, only-first, garbage
    assert scores[0] == pytest.approx(4 / 5)  # the first pair is in all but the garbage answer
    assert scores[1:] == pytest.approx([2 / 5] * (len(scores) - 1))  # the others only in the two full answers


def test_char_offsets_tile_the_decoded_text(tiny_model_dir):
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = '<think>ok</think><answer>[{"object class": "sit on"}]</answer>'
    ids = tok.encode(text, add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
    assert "".join(text[a:b] for a, b in offsets) == text
