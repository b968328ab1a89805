"""Draw ground-truth and predicted human-object pairs on an image.

Ground truth in green (humans) and blue (objects), predictions in red (humans) and orange
(objects); a line joins the centres of each pair and the label reads ``verb object score``.

>>> from PIL import Image
>>> from hoi_r1.answer import Triplet
>>> from hoi_r1.vocab import HOIVocabulary
>>> v = HOIVocabulary.open(["ride"], ["person", "bicycle"])
>>> im = draw_pairs(Image.new("RGB", (64, 64)), [Triplet((1, 1, 20, 40), (10, 30, 60, 60), 1, (0,), 0.9)], v)
>>> im.size, im.getpixel((1, 20))
((64, 64), (230, 40, 40))
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from hoi_r1.answer import Triplet
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

PRED_HUMAN, PRED_OBJECT = (230, 40, 40), (255, 150, 0)
GT_HUMAN, GT_OBJECT = (40, 200, 60), (40, 120, 255)


def draw_pairs(
    image: Image.Image,
    triplets: Sequence[Triplet],
    vocab: HOIVocabulary,
    ground_truth: HOISample | None = None,
    max_pairs: int = 20,
) -> Image.Image:
    """A copy of ``image`` with ground truth (if given) and up to ``max_pairs`` predictions drawn."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    if ground_truth is not None:
        for h, o, verbs in ground_truth.grouped_pairs():
            label = ",".join(vocab.verbs[v] for v in verbs) + " " + vocab.objects[ground_truth.object_labels[o]]
            _pair(draw, ground_truth.human_boxes[h], ground_truth.object_boxes[o], GT_HUMAN, GT_OBJECT, label)
    for t in list(triplets)[:max_pairs]:
        verbs = ",".join(vocab.verbs[v] for v in t.verb_ids)
        _pair(draw, t.human_box, t.object_box, PRED_HUMAN, PRED_OBJECT, f"{verbs} {vocab.objects[t.object_id]} {t.score:.2f}")
    return out


def _pair(draw: ImageDraw.ImageDraw, human, obj, human_colour, object_colour, label: str) -> None:
    human, obj = [float(x) for x in human], [float(x) for x in obj]
    draw.rectangle(human, outline=human_colour, width=1)
    draw.rectangle(obj, outline=object_colour, width=1)
    hc = ((human[0] + human[2]) / 2, (human[1] + human[3]) / 2)
    oc = ((obj[0] + obj[2]) / 2, (obj[1] + obj[3]) / 2)
    draw.line([hc, oc], fill=human_colour, width=1)
    draw.text((human[0] + 2, human[1] + 1), label, fill=human_colour)


def draw_record(image: Image.Image, record: dict, max_pairs: int = 20) -> Image.Image:
    """Draw one prediction record (the ``hoi-r1 predict`` / ``hoi-r1 eval`` layout: a list of
    ``hois`` with ``human_box``, ``object_box``, ``object``, ``verb``, ``score``); the verbs of a
    pair share one label."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    pairs: dict[tuple, list[str]] = {}
    for hoi in record.get("hois", []):
        key = (tuple(hoi["human_box"]), tuple(hoi["object_box"]), hoi["object"], round(float(hoi["score"]), 2))
        pairs.setdefault(key, []).append(hoi["verb"])
    for (human, obj, name, score), verbs in list(pairs.items())[:max_pairs]:
        _pair(draw, human, obj, PRED_HUMAN, PRED_OBJECT, f"{','.join(verbs)} {name} {score:.2f}")
    return out
