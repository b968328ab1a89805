"""Generate → parse → score → HOI-mAP: the evaluation every LightningModule of the project shares.

One :class:`HOIEvaluation` per stage holds a :class:`~hoi_r1.metric.HOIMeanAveragePrecision`
and an :class:`~hoi_r1.image_counts.ImageCounts` of what the parser saw (parse rate, answers with
the exact format, pairs per image, truncations). Both are torchmetrics metrics: under DDP their
states are gathered from every process in ``compute``, so every rate is the rate of the whole
split, with the duplicates a ``DistributedSampler`` pads with counted once. Confidence scores
for the ranking come from :mod:`hoi_r1.scores`: ``rank`` (HOI-R1's position score), ``logprob``
(mean log-probability of each triplet's label tokens), ``logprob_element`` (the same over every
token of its answer element) or ``vote`` (agreement of each triplet across sampled answers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

from hoi_r1.answer import ParsedAnswer, parse_answer
from hoi_r1.generation import Completions, GenerationSettings, char_offsets, generate
from hoi_r1.grounding import grounding_hits, parse_grounding_answer
from hoi_r1.hoi_map import targets_from_sample
from hoi_r1.image_counts import ImageCounts
from hoi_r1.metric import HOIMeanAveragePrecision
from hoi_r1.metric_input import to_metric_preds
from hoi_r1.metric_protocols import ProtocolName
from hoi_r1.scores import (LOGPROB_SCORES, ScoreKind, apply_scores, logprob_scores, score_spans, span_mean_logprobs,
                           vote_scores)
from hoi_r1.vocab import HOIVocabulary

PARSE_COUNTS = ("parsed", "exact_format", "pairs", "truncated")
GROUNDING_COUNTS = ("hits", "predicted", "truth")


@dataclass
class EvaluationSettings:
    """How validation and test score detections.

    Args:
        protocol: HOI-mAP protocol (``hico_official``, ``qpic``, ``gen_vlkt``, ``pocket``, ``swig``,
            ``hoi_r1``; docs/metric.md).
        scores: confidence of each triplet: ``rank``, ``logprob`` (its label tokens),
            ``logprob_element`` (every token of its answer element) or ``vote``.
        vote_samples: sampled answers per image for ``vote`` (generated with ``vote_temperature``).
        vote_temperature: sampling temperature of the ``vote`` answers.
        zero_shot: report Unseen / Seen mAP for this zero-shot setting of the vocabulary.
        known_object: also report the Known-Object setting.
    """

    protocol: ProtocolName = "hico_official"
    scores: ScoreKind = "rank"
    vote_samples: int = 5
    vote_temperature: float = 0.7
    zero_shot: str | None = None
    known_object: bool = False


torch.serialization.add_safe_globals([EvaluationSettings])  # read back from checkpoints


class HOIEvaluation(nn.Module):
    """HOI-mAP and parse statistics of one stage (``val`` or ``test``).

    Args:
        vocab: the split's vocabulary.
        settings: protocol, confidence scores and extra settings of the mAP.

    ``step`` (or ``update``) per batch, ``compute`` at the end of the epoch, then ``reset``.
    """

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        super().__init__()
        self.vocab = vocab
        self.settings = settings
        self.metric = HOIMeanAveragePrecision(
            vocab, protocol=settings.protocol, zero_shot=settings.zero_shot, known_object=settings.known_object
        )
        self.counts = ImageCounts(PARSE_COUNTS)

    def reset(self) -> None:
        """Forget the epoch: the metric and the counters."""
        self.metric.reset()
        self.counts.reset()

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        """Generate answers for a generation batch, parse and score them, update the metric."""
        first = generate(model, processor, batch, _single(generation), logprobs=self.settings.scores in LOGPROB_SCORES)
        parsed = [parse_answer(t, self.vocab, f) for t, f in zip(first.texts, batch["frames"])]
        parsed = self._score(parsed, first, model, processor, batch, generation)
        self.update(parsed, batch, first)
        return parsed

    def update(
        self,
        parsed: list[ParsedAnswer],
        batch: dict,
        completions: Completions | None = None,
        truncated: Sequence[bool] | None = None,
    ) -> None:
        """Feed parsed answers of a batch to the metric and the counters.

        Args:
            parsed: one parsed answer per sample of ``batch["samples"]``.
            batch: the generation batch (its ``samples`` are read).
            completions: the generated completions (their ``truncated`` flags are counted).
            truncated: per answer, cut at the token limit (instead of ``completions``; none
                counts as not truncated).
        """
        samples = batch["samples"]
        preds = [to_metric_preds(p, self.vocab, s.image_id) for p, s in zip(parsed, samples)]
        targets = [targets_from_sample(s) for s in samples]
        self.metric.update(preds, targets)
        if truncated is None:
            truncated = completions.truncated if completions is not None else [False] * len(parsed)
        self.counts.update([s.image_id for s in samples], {
            "parsed": [p.json_ok or p.decoded for p in parsed],
            "exact_format": [p.structure_ok for p in parsed],
            "pairs": [len(p.triplets) for p in parsed],
            "truncated": list(truncated),
        })

    def compute(self) -> dict[str, float]:
        """Metric values and parse statistics over every process (the caller resets)."""
        out = {k: float(v) for k, v in self.metric.compute().items() if torch.as_tensor(v).numel() == 1}
        counts = {k: float(v) for k, v in self.counts.compute().items()}
        n = max(counts["images"], 1.0)
        out["parse_rate"] = counts["parsed"] / n
        out["format_rate"] = counts["exact_format"] / n
        out["pairs_per_image"] = counts["pairs"] / n
        out["truncation_rate"] = counts["truncated"] / n
        return out

    def _score(self, parsed, first: Completions, model, processor, batch, generation) -> list[ParsedAnswer]:
        kind = self.settings.scores
        if kind == "rank":
            return parsed  # parse_answer already gives HOI-R1's rank scores
        if kind in LOGPROB_SCORES:
            tok = processor.tokenizer
            out = []
            for p, text, ids, lps, mask in zip(parsed, first.texts, first.token_ids, first.token_logprobs, first.mask):
                n = int(mask.sum())
                offsets = char_offsets(tok, ids[:n].tolist())
                means = span_mean_logprobs(score_spans(kind, text, p, self.vocab), offsets, lps[:n].tolist())
                out.append(apply_scores(p, logprob_scores(means)))
            return out
        sampled = GenerationSettings(
            max_new_tokens=generation.max_new_tokens,
            do_sample=True,
            temperature=self.settings.vote_temperature,
            num_samples=self.settings.vote_samples,
        )
        extra = generate(model, processor, batch, sampled, logprobs=False)
        k = self.settings.vote_samples
        out = []
        for i, (p, frame) in enumerate(zip(parsed, batch["frames"])):
            samples = [parse_answer(t, self.vocab, frame) for t in extra.texts[i * k : (i + 1) * k]]
            out.append(apply_scores(p, vote_scores([p, *samples])))
        return out


class GroundingEvaluation(nn.Module):
    """Entity precision / recall (label right, IoU ≥ 0.5) of the grounding task
    (:mod:`hoi_r1.grounding`), with the same interface as :class:`HOIEvaluation`; the counts are
    an :class:`~hoi_r1.image_counts.ImageCounts` (global under DDP, padded duplicates once).

    Args:
        vocab: the split's vocabulary.
        settings: unused (the interface of :class:`HOIEvaluation`).
    """

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        super().__init__()
        self.vocab = vocab
        self.counts = ImageCounts(GROUNDING_COUNTS)

    def reset(self) -> None:
        """Forget the epoch's counts."""
        self.counts.reset()

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        completions = generate(model, processor, batch, _single(generation), logprobs=False)
        values: dict[str, list[int]] = {k: [] for k in GROUNDING_COUNTS}
        for text, frame, sample in zip(completions.texts, batch["frames"], batch["samples"]):
            predicted = parse_grounding_answer(text, self.vocab, frame)
            values["hits"].append(grounding_hits(predicted, sample, self.vocab))
            values["predicted"].append(len(predicted))
            values["truth"].append(len(sample.human_boxes) + len(sample.object_boxes))
        self.counts.update([s.image_id for s in batch["samples"]], values)
        return [ParsedAnswer() for _ in completions.texts]

    def compute(self) -> dict[str, float]:
        """Precision, recall and entities per image over every process (the caller resets)."""
        c = {k: float(v) for k, v in self.counts.compute().items()}
        return {
            "grounding_precision": c["hits"] / max(c["predicted"], 1),
            "grounding_recall": c["hits"] / max(c["truth"], 1),
            "entities_per_image": c["predicted"] / max(c["images"], 1),
        }


def _single(settings: GenerationSettings) -> GenerationSettings:
    return replace(settings, num_samples=1)
