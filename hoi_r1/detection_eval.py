"""Generate → parse → score → HOI-mAP: the evaluation every LightningModule of the project shares.

One :class:`HOIEvaluation` per stage holds a :class:`~hoi_r1.metric.HOIMeanAveragePrecision`
and counters of what the parser saw (parse rate, answers with the exact format, pairs per
image, truncations). Confidence scores for the ranking come from :mod:`hoi_r1.scores`:
``rank`` (HOI-R1's position score), ``logprob`` (mean log-probability of each triplet's label
tokens) or ``vote`` (agreement of each triplet across sampled answers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from hoi_r1.answer import ParsedAnswer, parse_answer, to_metric_preds
from hoi_r1.generation import Completions, GenerationSettings, char_offsets, generate
from hoi_r1.metric import HOIMeanAveragePrecision, targets_from_sample
from hoi_r1.scores import apply_scores, label_spans, logprob_scores, span_mean_logprobs, vote_scores
from hoi_r1.vocab import HOIVocabulary

ScoreKind = Literal["rank", "logprob", "vote"]


@dataclass
class EvaluationSettings:
    """How validation and test score detections.

    Args:
        protocol: HOI-mAP protocol (``hico_official``, ``qpic``, ``gen_vlkt``, ``pocket``, ``swig``).
        scores: confidence of each triplet: ``rank``, ``logprob`` or ``vote``.
        vote_samples: sampled answers per image for ``vote`` (generated with ``vote_temperature``).
        vote_temperature: sampling temperature of the ``vote`` answers.
        zero_shot: report Unseen / Seen mAP for this zero-shot setting of the vocabulary.
        known_object: also report the Known-Object setting.
    """

    protocol: str = "hico_official"
    scores: ScoreKind = "rank"
    vote_samples: int = 5
    vote_temperature: float = 0.7
    zero_shot: str | None = None
    known_object: bool = False


torch.serialization.add_safe_globals([EvaluationSettings])  # read back from checkpoints


class HOIEvaluation(nn.Module):
    """HOI-mAP and parse statistics of one stage (``val`` or ``test``)."""

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        super().__init__()
        self.vocab = vocab
        self.settings = settings
        self.metric = HOIMeanAveragePrecision(
            vocab, protocol=settings.protocol, zero_shot=settings.zero_shot, known_object=settings.known_object
        )
        self.reset_counts()

    def reset_counts(self) -> None:
        self.counts = {"images": 0, "parsed": 0, "exact_format": 0, "pairs": 0, "truncated": 0}

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        """Generate answers for a generation batch, parse and score them, update the metric."""
        first = generate(model, processor, batch, _single(generation))
        parsed = [parse_answer(t, self.vocab, f) for t, f in zip(first.texts, batch["frames"])]
        parsed = self._score(parsed, first, model, processor, batch, generation)
        self.update(parsed, batch, first)
        return parsed

    def update(self, parsed: list[ParsedAnswer], batch: dict, completions: Completions | None = None) -> None:
        """Feed parsed answers of a batch to the metric and the counters."""
        preds = [to_metric_preds(p, self.vocab, s.image_id) for p, s in zip(parsed, batch["samples"])]
        targets = [targets_from_sample(s) for s in batch["samples"]]
        self.metric.update(preds, targets)
        self.counts["images"] += len(parsed)
        self.counts["parsed"] += sum(p.json_ok or p.decoded for p in parsed)
        self.counts["exact_format"] += sum(p.structure_ok for p in parsed)
        self.counts["pairs"] += sum(len(p.triplets) for p in parsed)
        if completions is not None:
            self.counts["truncated"] += sum(completions.truncated)

    def compute(self) -> dict[str, float]:
        """Metric values and parse statistics; resets the counters (the caller resets the metric)."""
        out = {k: float(v) for k, v in self.metric.compute().items() if torch.as_tensor(v).numel() == 1}
        n = max(self.counts["images"], 1)
        out["parse_rate"] = self.counts["parsed"] / n
        out["format_rate"] = self.counts["exact_format"] / n
        out["pairs_per_image"] = self.counts["pairs"] / n
        out["truncation_rate"] = self.counts["truncated"] / n
        self.reset_counts()
        return out

    def _score(self, parsed, first: Completions, model, processor, batch, generation) -> list[ParsedAnswer]:
        kind = self.settings.scores
        if kind == "rank":
            return parsed  # parse_answer already gives HOI-R1's rank scores
        if kind == "logprob":
            tok = processor.tokenizer
            out = []
            for p, text, ids, lps, mask in zip(parsed, first.texts, first.token_ids, first.token_logprobs, first.mask):
                n = int(mask.sum())
                offsets = char_offsets(tok, ids[:n].tolist())
                means = span_mean_logprobs(label_spans(text, p, self.vocab), offsets, lps[:n].tolist())
                out.append(apply_scores(p, logprob_scores(means)))
            return out
        sampled = GenerationSettings(
            max_new_tokens=generation.max_new_tokens,
            do_sample=True,
            temperature=self.settings.vote_temperature,
            num_samples=self.settings.vote_samples,
        )
        extra = generate(model, processor, batch, sampled)
        k = self.settings.vote_samples
        out = []
        for i, (p, frame) in enumerate(zip(parsed, batch["frames"])):
            samples = [parse_answer(t, self.vocab, frame) for t in extra.texts[i * k : (i + 1) * k]]
            out.append(apply_scores(p, vote_scores([p, *samples])))
        return out


class GroundingEvaluation(nn.Module):
    """Entity precision / recall (label right, IoU ≥ 0.5) of the grounding task
    (:mod:`hoi_r1.grounding`), with the same interface as :class:`HOIEvaluation`."""

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        super().__init__()
        self.vocab = vocab
        self.metric = _NoMetric()
        self.counts = {"hits": 0, "predicted": 0, "truth": 0, "images": 0}

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        from hoi_r1.grounding import grounding_hits, parse_grounding_answer

        completions = generate(model, processor, batch, _single(generation))
        for text, frame, sample in zip(completions.texts, batch["frames"], batch["samples"]):
            predicted = parse_grounding_answer(text, self.vocab, frame)
            self.counts["hits"] += grounding_hits(predicted, sample, self.vocab)
            self.counts["predicted"] += len(predicted)
            self.counts["truth"] += len(sample.human_boxes) + len(sample.object_boxes)
            self.counts["images"] += 1
        return [ParsedAnswer() for _ in completions.texts]

    def compute(self) -> dict[str, float]:
        c = self.counts
        out = {
            "grounding_precision": c["hits"] / max(c["predicted"], 1),
            "grounding_recall": c["hits"] / max(c["truth"], 1),
            "entities_per_image": c["predicted"] / max(c["images"], 1),
        }
        self.counts = {k: 0 for k in c}
        return out


class _NoMetric:
    def reset(self) -> None:
        pass


def _single(settings: GenerationSettings) -> GenerationSettings:
    return replace(settings, num_samples=1)
