"""Draw ground-truth and predicted human-object pairs on an image, legibly.

The image is enlarged (nearest neighbour, a whole factor) until its shorter side is at least
:data:`MIN_SIDE` pixels, so that boxes of small images stay sharp and labels fit. Each pair gets
a number: its human and object boxes are drawn, a line joins their centres, and the number sits
on a filled tag at the human box's top-left corner, moved down past tags already placed so that
no two cover each other. The labels themselves (``verb object score``) are listed by number in a
panel right of the image, under one legend: ground truth in green (humans) and blue (objects),
drawn wider, predictions in red (humans) and orange (objects).

>>> from PIL import Image
>>> from hoi_r1.answer import Triplet
>>> from hoi_r1.vocab import HOIVocabulary
>>> v = HOIVocabulary.open(["ride"], ["person", "bicycle"])
>>> im = draw_pairs(Image.new("RGB", (64, 64)), [Triplet((1, 1, 20, 40), (10, 30, 60, 60), 1, (0,), 0.9)], v)
>>> im.size  # 64 px enlarged 5x to 320, and the label panel beside it
(540, 320)
>>> im.getpixel((5 * 1, 5 * 20)) == PRED_HUMAN  # the human box's left edge
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from hoi_r1.answer import Triplet
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

PRED_HUMAN, PRED_OBJECT = (230, 40, 40), (255, 150, 0)
GT_HUMAN, GT_OBJECT = (40, 170, 60), (40, 110, 255)
MIN_SIDE = 320
"""Shorter side, in pixels, that a drawn image is enlarged to at least."""
PANEL_WIDTH = 220
"""Width of the label panel right of the image."""
FONT_SIZE = 13


@dataclass(frozen=True)
class DrawnPair:
    """One pair to draw: boxes in the image's pixels, its label, and whether it is ground truth."""

    human: tuple[float, float, float, float]
    obj: tuple[float, float, float, float]
    label: str
    truth: bool = False


def draw_pairs(
    image: Image.Image,
    triplets: Sequence[Triplet],
    vocab: HOIVocabulary,
    ground_truth: HOISample | None = None,
    max_pairs: int = 20,
) -> Image.Image:
    """The enlarged ``image`` with ground truth (if given) and up to ``max_pairs`` predictions
    drawn and listed."""
    pairs = []
    if ground_truth is not None:
        for h, o, verbs in ground_truth.grouped_pairs():
            label = ",".join(vocab.verbs[v] for v in verbs) + " " + vocab.objects[ground_truth.object_labels[o]]
            pairs.append(DrawnPair(_box(ground_truth.human_boxes[h]), _box(ground_truth.object_boxes[o]), label, True))
    for t in list(triplets)[:max_pairs]:
        verbs = ",".join(vocab.verbs[v] for v in t.verb_ids)
        pairs.append(DrawnPair(_box(t.human_box), _box(t.object_box), f"{verbs} {vocab.objects[t.object_id]} {t.score:.2f}"))
    return render(image, pairs)


def draw_record(image: Image.Image, record: dict, max_pairs: int = 20) -> Image.Image:
    """Draw one prediction record (the ``hoi-r1 predict`` / ``hoi-r1 eval`` layout: a list of
    ``hois`` with ``human_box``, ``object_box``, ``object``, ``verb``, ``score``); the verbs of a
    pair share one label."""
    grouped: dict[tuple, list[str]] = {}
    for hoi in record.get("hois", []):
        key = (tuple(hoi["human_box"]), tuple(hoi["object_box"]), hoi["object"], round(float(hoi["score"]), 2))
        grouped.setdefault(key, []).append(hoi["verb"])
    pairs = [DrawnPair(_box(human), _box(obj), f"{','.join(verbs)} {name} {score:.2f}")
             for (human, obj, name, score), verbs in list(grouped.items())[:max_pairs]]
    return render(image, pairs)


def render(image: Image.Image, pairs: Sequence[DrawnPair]) -> Image.Image:
    """``image`` enlarged, ``pairs`` drawn and numbered on it, their labels in the panel beside."""
    source = image.convert("RGB")
    scale = max(1, math.ceil(MIN_SIDE / max(1, min(source.size))))
    width, height = source.width * scale, source.height * scale
    font = _font()
    line = FONT_SIZE + 5
    canvas = Image.new("RGB", (width + PANEL_WIDTH, max(height, line * (len(pairs) + 3) + 8)), "white")
    canvas.paste(source.resize((width, height), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(canvas)
    placed: list[tuple[float, float, float, float]] = []
    for number, pair in enumerate(pairs, start=1):
        human = [v * scale for v in pair.human]
        obj = [v * scale for v in pair.obj]
        human_colour, object_colour = (GT_HUMAN, GT_OBJECT) if pair.truth else (PRED_HUMAN, PRED_OBJECT)
        thickness = 3 if pair.truth else 2  # ground truth drawn wider, under the predictions
        draw.rectangle(_clip(human, width, height), outline=human_colour, width=thickness)
        draw.rectangle(_clip(obj, width, height), outline=object_colour, width=thickness)
        draw.line([_centre(human), _centre(obj)], fill=human_colour, width=2)
        _tag(draw, font, str(number), human, human_colour, placed, width, height)
    _panel(draw, font, pairs, width + 10, line)
    return canvas


def _tag(draw, font, text: str, box: list[float], colour, placed: list, width: int, height: int) -> None:
    """The pair's number on a filled tag (:func:`place_tag`)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    rect = place_tag(right - left + 6, bottom - top + 4, box, placed, width, height)
    placed.append(rect)
    draw.rectangle(rect, fill=colour)
    draw.text((rect[0] + 3 - left, rect[1] + 2 - top), text, fill="white", font=font)


def place_tag(
    w: float, h: float, box: Sequence[float], placed: Sequence[tuple[float, float, float, float]], width: int, height: int
) -> tuple[float, float, float, float]:
    """Where a ``w`` x ``h`` tag goes: the first free slot of a grid of tag-sized slots that starts
    at the box's top-left corner (inside the image) and runs down, then column by column to the
    right, wrapping round the image; the corner itself when the image is full.

    >>> place_tag(10, 8, (5, 5, 50, 50), [(5, 5, 15, 13)], 100, 100)
    (5, 14, 15, 22)
    """
    x0 = min(max(box[0], 0), width - w)
    y0 = min(max(box[1], 0), height - h)
    columns = max(1, int(width // (w + 1)))
    rows = max(1, int(height // (h + 1)))
    for c in range(columns):
        x = (x0 + c * (w + 1)) % max(width - w + 1, 1)
        for r in range(rows):
            y = (y0 + r * (h + 1)) % max(height - h + 1, 1)
            rect = (x, y, x + w, y + h)
            if not any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed):
                return rect
    return (x0, y0, x0 + w, y0 + h)


def _panel(draw, font, pairs: Sequence[DrawnPair], x: int, line: int) -> None:
    """The legend (ground truth only when there is some), then one numbered label per pair."""
    y = 6
    kinds = [("ground truth", (GT_HUMAN, GT_OBJECT))] if any(p.truth for p in pairs) else []
    for name, (a, b) in kinds + [("prediction", (PRED_HUMAN, PRED_OBJECT))]:
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=a)
        draw.rectangle((x + 12, y + 2, x + 22, y + 12), fill=b)
        draw.text((x + 28, y), f"{name} (human, object)", fill="black", font=font)
        y += line
    y += 4
    for number, pair in enumerate(pairs, start=1):
        draw.text((x, y), f"{number}  {pair.label}", fill=GT_HUMAN if pair.truth else PRED_HUMAN, font=font)
        y += line


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _box(values) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def _clip(box: list[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [min(max(x1, 0), width - 1), min(max(y1, 0), height - 1), min(max(x2, 0), width - 1), min(max(y2, 0), height - 1)]


def _centre(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
