"""The six HOI-mAP protocols: what each published evaluation does differently.

Every protocol uses the matching of :mod:`hoi_r1.matching` and the 11-point AP of
:mod:`hoi_r1.average_precision`; they differ only in the settings of :class:`Protocol`, each
setting a rule read off the reference evaluator's code (docs/metric.md lists them all; the
per-image steps run in :mod:`hoi_r1.detection_filters`):

==================  ==========================  =====  =============================  ======================
protocol            pixels / overlap            IoU    per image                      classes averaged
==================  ==========================  =====  =============================  ======================
``hico_official``   +1                          >= .5  nothing                        all (no GT: AP 0)
``qpic``            +1, touching boxes: IoU 0   >= .5  score x validity, top 100;     classes with test GT
                                                       images without GT ignored
``gen_vlkt``        +1, touching boxes: IoU 0   >= .5  top 100 (+ triplet NMS)        classes with test GT
``pocket``          continuous                  > .5   class from (verb, object);     all (no GT: AP 0)
                                                       images without GT skipped
``swig``            continuous                  >= .5  nothing (top 19,999 / class)   evaluated classes
``hoi_r1``          +1, touching: 0, +1e-6      > .5   score x validity, top 100,     classes with test GT
                                                       scores < 0.001 dropped         (or no detections)
==================  ==========================  =====  =============================  ======================

``hoi_r1`` alone matches with a fall-back (first free pair passing both IoUs, not the best pair).

Ranking inside a class: MATLAB's stable ``sort`` (``hico_official``) and HOI-R1's ``sorted``
keep tied scores in detection order; QPIC and GEN-VLKT rank with ``numpy.argsort(-score)``,
pocket with ``torch.argsort(score, descending=True)`` and THID with ``numpy.argsort(score)[::-1]``,
none of them stable, each over the order it appended the detections in, and so do ``qpic``,
``gen_vlkt``, ``pocket`` and ``swig`` here (:data:`Protocol.tie_order`). THID also matches while
it walks that ranking (:data:`Protocol.match_in_rank_order`).

The 11 recall thresholds are the floats each reference produces: MATLAB's ``0:0.1:1``
(``hico_official``; identical to ``torch.linspace``, so ``pocket`` too), numpy's
``arange(0, 1.1, 0.1)`` (``qpic``, ``gen_vlkt``) and ``i / 10.0`` (``swig``). A recall of exactly
0.6 passes the first and the last but not numpy's ``0.6000000000000001``.

>>> PROTOCOLS["qpic"].recall_thresholds[6], PROTOCOLS["pocket"].recall_thresholds[6]
(0.6000000000000001, 0.6)
>>> PROTOCOLS["qpic"].skip_images_without_gt, PROTOCOLS["gen_vlkt"].skip_images_without_gt
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # a type name only: the protocols are data, and importing them needs no torch
    from hoi_r1.boxes import PixelConvention

ProtocolName = Literal["hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1"]
PROTOCOL_NAMES: tuple[str, ...] = get_args(ProtocolName)


@dataclass(frozen=True)
class TripletNMS:
    """GEN-VLKT's pairwise triplet NMS, per image and class, after the top-k cut.

    A detection is suppressed by a higher-scoring one of the same class when
    ``IoU_h ** alpha * IoU_o ** beta > threshold`` (+1 pixel convention).

    Args:
        threshold: suppression threshold on the combined overlap.
        alpha: exponent of the human-box IoU.
        beta: exponent of the object-box IoU.
    """

    threshold: float = 0.7
    alpha: float = 1.0
    beta: float = 0.5


@dataclass(frozen=True)
class Protocol:
    """Settings that make one published HOI-mAP evaluation.

    Args:
        name: protocol name.
        convention: pixel convention of box IoU.
        strict: match when pair-IoU ``> 0.5`` (``pocket``) instead of ``>= 0.5``.
        recall_thresholds: the 11 recall floats of the 11-point AP, in summation order.
        object_label_class: the class of a detection is ``(verb of its class, its predicted
            object label)``; a detection whose pair is not a valid class scores 0 and is dropped
            after the top-k cut (QPIC: scores x verb-object validity).
        top_k_per_image: keep the k best detections per image (stable on ties).
        top_k_per_class: keep the k best detections per class over the test set.
        skip_images_without_gt: detections of images without any ground-truth pair are ignored.
        drop_classes_without_gt: classes without test ground truth leave the averages (QPIC and
            GEN-VLKT); otherwise they count with AP 0.
        evaluated_only: only classes outside ``vocab.unevaluated`` are averaged (SWIG-HOI).
        report: ``hico`` (Full / Rare / Non-rare from ``vocab.rare``) or ``swig`` (Full /
            Non-rare / Rare / Unseen from ``vocab.frequency``).
        triplet_nms: GEN-VLKT's optional triplet NMS, or ``None``.
        tie_order: how a class's detections are ranked
            (:func:`hoi_r1.average_precision.ranking_order`): ``stable`` (score descending, then
            image id, then detection order); ``numpy_argsort`` (``numpy.argsort(-score)``,
            numpy's default unstable sort, over the detections in image-id order and, inside an
            image, in matching order: what QPIC's and GEN-VLKT's ``compute_map`` do);
            ``torch_argsort`` (``torch.argsort(score, descending=True)``, not stable, over the
            detections in image-id order, then input order: pocket's ``DetectionAPMeter``);
            ``numpy_argsort_reversed`` (``numpy.argsort(score)[::-1]`` over the same order:
            THID's ``calc_ap``, which ranks the last of tied detections first where the sort
            keeps ties in order).
        match_in_rank_order: matching walks the class's ranked list (``tie_order``), so of tied
            detections that pick the same ground-truth pair the one ranked first takes it
            (THID's ``calc_ap`` matches inside its ranking loop); otherwise tied detections of
            an image match in input order.
        top_k_ties_repeat_first: after the top-k cut, every kept detection is replaced by the
            image's first detection (input order) with the same score, so ``m`` tied detections
            become ``m`` copies of the first (GEN-VLKT: ``top_k`` returns scores and
            ``np.where(hoi_scores == score)[0][0]`` looks each one up).
        matching: ``best_pair`` (:func:`hoi_r1.matching.greedy_match`, no fall-back) or
            ``first_free`` (:func:`hoi_r1.matching.first_free_match`, HOI-R1's fall-back rule).
        min_score: after the top-k cut, detections scoring below this are dropped.
        count_undetected_classes_without_gt: with ``drop_classes_without_gt``, a class without
            test ground truth *and* without detections still counts, with AP 0 (HOI-R1's
            ``compute_pr`` returns before the NaN recall when there is no detection).
    """

    name: str
    convention: PixelConvention
    strict: bool
    recall_thresholds: tuple[float, ...]
    object_label_class: bool = False
    top_k_per_image: int | None = None
    top_k_per_class: int | None = None
    skip_images_without_gt: bool = False
    drop_classes_without_gt: bool = False
    evaluated_only: bool = False
    report: Literal["hico", "swig"] = "hico"
    triplet_nms: TripletNMS | None = None
    tie_order: Literal["stable", "numpy_argsort", "torch_argsort", "numpy_argsort_reversed"] = "stable"
    top_k_ties_repeat_first: bool = False
    matching: Literal["best_pair", "first_free"] = "best_pair"
    min_score: float | None = None
    count_undetected_classes_without_gt: bool = False
    match_in_rank_order: bool = False


def matlab_colon_thresholds() -> tuple[float, ...]:
    """``0:0.1:1`` as MATLAB fills it: ``k * 0.1`` up to the middle, ``1 - (10 - k) * 0.1`` after."""
    return tuple(k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


def numpy_arange_thresholds() -> tuple[float, ...]:
    """``numpy.arange(0., 1.1, 0.1)``: ``k * 0.1``."""
    return tuple(k * 0.1 for k in range(11))


def exact_decimal_thresholds() -> tuple[float, ...]:
    """``i / 10.0`` (THID's SWIG-HOI evaluator)."""
    return tuple(i / 10.0 for i in range(11))


def torch_linspace_thresholds() -> tuple[float, ...]:
    """``torch.linspace(0, 1, 11, dtype=float64)`` (pocket's ``DetectionAPMeter``) as torch's CPU
    kernel fills it (``aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp``): with
    ``step = (end - start) / (steps - 1)``, ``start + k * step`` below the middle
    (``k < steps / 2``) and ``end - (steps - 1 - k) * step`` from it."""
    step = (1.0 - 0.0) / 10
    return tuple(0.0 + k * step if k < 11 / 2 else 1.0 - (10 - k) * step for k in range(11))


def hico_official() -> Protocol:
    """The official MATLAB evaluation: ywchao/ho-rcnn ``evaluation/eval_one.m`` in its Default
    setting (``eval_mode = 'def'``) and ``evaluation/VOCevaldet_bboxpair.m``.

    Rules, each where the reference code makes it:

    * *+1 pixels, overlap when both +1 sides are positive* — ``VOCevaldet_bboxpair``:
      ``iw = min(x2) - max(x1) + 1``, ``ov = iw * ih / ua`` only when ``iw > 0 && ih > 0``, with
      ``ua`` the two ``+1`` areas minus the intersection.
    * *best pair, no fall-back, >= 0.5* — ``ov_max = -inf`` and ``min_ov > ov_max`` keep the first
      pair of largest ``min(ov_1, ov_2)``; a hit when ``ov_max >= min_overlap`` (0.5) and the
      pair's ``det`` flag is free, otherwise a false positive.
    * *stable ranking* — ``[~, si] = sort(-det_conf)``: MATLAB's sort is stable, so ties keep the
      detection order ``eval_one`` built (image by image, rows in file order).
    * *11-point AP* — ``for t = 0:0.1:1``, ``p = max(prec(rec >= t))`` (0 when empty),
      ``ap = ap + p/11``: MATLAB's ``0:0.1:1`` floats, summed in threshold order.
    * *images without ground truth count* — ``gt(i).bb`` is empty, ``ov_max`` stays ``-inf``:
      a false positive.
    * *every class counts* — ``eval_one``: ``mean(AP)`` over all classes; a class without ground
      truth has ``rec = 0/0`` (NaN), no threshold passes, AP 0.
    """
    return Protocol("hico_official", "plus_one", strict=False, recall_thresholds=matlab_colon_thresholds())


def qpic() -> Protocol:
    """QPIC's / CDN's ``datasets/hico_eval.py`` (``HICOEvaluator``).

    Rules, each where the reference code makes it:

    * *validity x score, top 100* — ``__init__``: verb scores times ``correct_mat[verb, object
      label]``, sorted (Python's stable sort, descending), first 100 kept; a zeroed entry stays
      in the 100 but its triplet has no ground truth, so it is never counted.
    * *object label is part of the class* — ``compute_IOU`` returns 0 for boxes of different
      categories, so a detection only matches ground truth of (its verb, its object label).
    * *images without ground truth are ignored* — ``evaluate``: for an image without
      ground-truth boxes the triplet is built as a ``list``, and ``list not in self.gt_triplets``
      (a list of ``tuple``) is always true, so every such detection is skipped, neither TP nor FP.
    * *touching boxes do not overlap* — ``compute_IOU``: IoU 0 unless ``max(x1) < min(x2)`` and
      ``max(y1) < min(y2)``; otherwise ``+1`` areas and sides (``plus_one_positive_overlap``).
    * *pair-IoU >= 0.5, best pair, no fall-back* — ``compute_iou_mat`` keeps box matches with
      IoU ``>= 0.5``; ``compute_fptp`` takes the pair with the largest ``min`` of the two IoUs
      (first on a tie) and counts a FP when it is taken.
    * *classes without test ground truth are left out* — ``compute_map`` loops over
      ``self.gt_triplets`` only.
    * *ranking* — ``compute_map``: ``np.argsort(-score)`` (``tie_order="numpy_argsort"``);
      thresholds of ``np.arange(0., 1.1, 0.1)`` (``voc_ap``).
    """
    return Protocol(
        "qpic", "plus_one_positive_overlap", strict=False, recall_thresholds=numpy_arange_thresholds(),
        object_label_class=True, top_k_per_image=100, skip_images_without_gt=True,
        drop_classes_without_gt=True, tie_order="numpy_argsort",
    )


def gen_vlkt(nms: TripletNMS | None = None) -> Protocol:
    """GEN-VLKT's ``datasets/hico_eval_triplet.py`` (``HICOEvaluator``).

    Rules, where they differ from :func:`qpic`:

    * *object label ignored* — ``compute_IOU`` has no category test and the class is the HOI id.
    * *images without ground truth count* — ``evaluate``: the triplet is the HOI id (an ``int``),
      so ``not in self.gt_triplets`` works and the detections become false positives of classes
      that have test ground truth.
    * *top 100 per image* without validity weighting (``__init__``, ``util/topk.py`` ``top_k``);
      each kept score is looked up with ``np.where(hoi_scores == score)[0][0]``, so tied scores
      all become copies of the first tied entry (``top_k_ties_repeat_first``); the optional
      triplet NMS (``triplet_nms_filter`` / ``pairwise_nms``) uses ``+1`` sides clamped at 0.
    * Shared with QPIC: touching boxes do not overlap (``compute_IOU``), best pair without
      fall-back (``compute_fptp``), classes without test ground truth left out and
      ``np.argsort(-score)`` ranking (``compute_map``), ``np.arange`` thresholds (``voc_ap``).
    """
    return Protocol(
        "gen_vlkt", "plus_one_positive_overlap", strict=False, recall_thresholds=numpy_arange_thresholds(),
        top_k_per_image=100, drop_classes_without_gt=True, triplet_nms=nms, tie_order="numpy_argsort",
        top_k_ties_repeat_first=True,
    )


def pocket() -> Protocol:
    """UPT's ``utils.py`` ``CustomisedDLE.test_hico`` with pocket's ``BoxPairAssociation`` and
    ``DetectionAPMeter(algorithm="11P")``.

    Rules, each where the reference code makes it:

    * *class from (object label, verb)* — ``test_hico``: ``interactions = conversion[objects,
      verbs]``; a pair that is no class has no interaction there and is dropped here.
    * *images without ground truth are skipped* — fredzzhang/hicodet ``hicodet.py``
      ``HICODet._load_annotation_and_metadata`` removes the ``empty`` images from the test set.
    * *continuous pixels, pair-IoU > 0.5 (strict)* — pocket ``utils/association.py``
      ``BoxAssociation.__call__``: each detection takes the ground-truth pair of largest
      ``min(IoU_h, IoU_o)`` (``iou.max(0)``), ``match > self.min_iou``, and per pair the
      matched detection with the highest score is the true positive (no fall-back).
      Ties: ``iou.max(0)`` gives the first ground-truth pair, ``argmax`` the first detection.
    * *every class averaged*, AP 0 without detections (``DetectionAPMeter.compute_ap_for_each``);
      thresholds ``torch.linspace(0, 1, 11)``
      (``compute_per_class_ap_with_11_point_interpolation``); a class with detections but no
      ground truth has recall 0 (``div`` by an ``int`` 0) and AP 0.
    * *ranking* — ``DetectionAPMeter.compute_pr_for_each``: ``output.argsort(descending=True)``,
      a non-stable CPU sort, over each class's scores in the order ``append`` collected them
      (``test_hico`` appends image by image, detections in output order):
      ``tie_order="torch_argsort"``. Beyond 16 tied scores it reorders them.
    """
    return Protocol(
        "pocket", "continuous", strict=True, recall_thresholds=torch_linspace_thresholds(),
        object_label_class=True, skip_images_without_gt=True, tie_order="torch_argsort",
    )


def swig() -> Protocol:
    """THID's SWIG-HOI evaluator (scwangdyd/promting_hoi ``datasets/swig_evaluator.py``,
    ``SWiGEvaluator`` and ``calc_ap``).

    Rules, each where the reference code makes it:

    * *ranking* — ``calc_ap``: ``np.argsort(scores)[::-1]`` over the class's scores in the order
      ``update`` appended them (image by image, detections in input order):
      ``tie_order="numpy_argsort_reversed"``; where numpy's sort keeps ties in order the last
      tied detection ranks first.
    * *matching inside the ranking loop* — ``calc_ap`` walks that ranked list and gives each
      detection the first ground-truth pair of largest pair-IoU (``maxi < tmp``), a hit when
      ``maxi >= 0.5`` and the pair is not in ``used`` (no fall-back): ``match_in_rank_order``.
    * *top 19,999 per class* — the loop stops after ``min(len(idx), 19999)`` detections.
    * *continuous IoU* — ``iou``: sides ``x2 - x1`` clamped at 0, intersection 0 unless positive.
    * *classes* — ``accumulate`` / ``summarize``: only ``evaluation == 1`` classes, groups by
      ``frequency``; a class without detections has AP 0 (``len(keys) == 0``); thresholds
      ``i / 10.0``.
    """
    return Protocol(
        "swig", "continuous", strict=False, recall_thresholds=exact_decimal_thresholds(),
        top_k_per_class=19_999, evaluated_only=True, report="swig", tie_order="numpy_argsort_reversed",
        match_in_rank_order=True,
    )


def hoi_r1() -> Protocol:
    """HOI-R1's ``hico_eval.py`` (cjw2021/HOI-R1, ``HICOEvaluator``; GGNet's de/ko evaluation).

    Rules, each where the reference code makes it:

    * *validity x score, top 100, then scores < 0.001 dropped* — ``__init__``: verb scores times
      ``correct_mat``, Python's stable sort descending, first 100 (``max_hois``), and the
      conversion loop skips ``score < 0.001``; the class is (verb, predicted object label).
    * *IoU* — ``compute_iou`` / ``compute_area``: ``+1`` areas, 0 for a box without positive
      extent, intersection 0 unless the boxes overlap with positive extent, and
      ``intersection / (union + 1e-6)`` (``plus_one_eps``).
    * *fall-back matching* — ``eval_hoi`` / ``match_hoi``: per image and class, detections by
      score each take the first remaining ground-truth pair (ground-truth order) with human
      IoU ``> 0.5`` and object IoU ``> 0.5`` (``first_free``).
    * *images without ground truth count* — ``eval_hoi`` loops over every test image; their
      detections are false positives.
    * *classes* — ``compute_pr``: no ground truth gives NaN recall, NaN AP, left out of the
      means (``evaluation_default``); but with no detection at all it returns AP 0 first, so a
      class without ground truth and without detections counts with AP 0.
    * *ranking* — ``compute_pr``: Python's stable ``sorted`` over the detections in image order;
      thresholds ``np.arange(0, 1.1, 0.1)`` (``compute_ap``).
    * Known-Object (``evaluation_ko``) keeps images whose object categories include the class's
      object; here the categories are those of the image's ground-truth pairs.
    """
    return Protocol(
        "hoi_r1", "plus_one_eps", strict=True, recall_thresholds=numpy_arange_thresholds(),
        object_label_class=True, top_k_per_image=100, drop_classes_without_gt=True,
        matching="first_free", min_score=0.001, count_undetected_classes_without_gt=True,
    )


PROTOCOLS: dict[str, Protocol] = {
    "hico_official": hico_official(),
    "qpic": qpic(),
    "gen_vlkt": gen_vlkt(),
    "pocket": pocket(),
    "swig": swig(),
    "hoi_r1": hoi_r1(),
}


def get_protocol(name: str, triplet_nms: bool | TripletNMS = False) -> Protocol:
    """The protocol called ``name``; ``triplet_nms`` (``gen_vlkt`` only) turns its NMS on."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOL_NAMES}, found {name!r}")
    if triplet_nms:
        if name != "gen_vlkt":
            raise ValueError(f"triplet_nms is part of the gen_vlkt protocol only, not {name!r}")
        return gen_vlkt(triplet_nms if isinstance(triplet_nms, TripletNMS) else TripletNMS())
    return PROTOCOLS[name]
