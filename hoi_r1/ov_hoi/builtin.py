"""The five OV-HOI tools as :class:`~hoi_r1.ov_hoi.protocol.ToolSpec` s: argument schemas (shown to
the model), and the glue from the conversation's text frame to the pure implementations
(:mod:`hoi_r1.ov_hoi.detection`, :mod:`hoi_r1.ov_hoi.spatial`, :mod:`hoi_r1.ov_hoi.image_ops`).

=====================  ==========================================  ================================
tool                   arguments                                   response (one line per item)
=====================  ==========================================  ================================
``detect_humans``      none                                        ``person 1: [x1, y1, x2, y2] 0.96``
``detect_objects``     ``categories``: list of names (any)         ``cup 1: [x1, y1, x2, y2] 0.82``
``spatial_relations``  ``human_box``, ``object_box``               ``right, touching, height 0.62, bottom -0.25, size 0.22``
``relations``          ``pairs``: ``[["person 1", "cup 1"], ...]``  ``person 1, cup 1: right, touching, …`` per pair
``crop``               ``box``, ``scale`` (default 2)              ``region [x1, y1, x2, y2], zoom 2.0, image attached`` + image
``imagine``            ``mode``, ``side``, ``amount``, ``prompt``  the note, ``offset [x, y], size [w, h], image attached`` + image
=====================  ==========================================  ================================

Responses are short lines written for a model to read, in the answer's frame; the structured
result (``ToolResult.data``) holds the same facts as numbers. The relation line reads: the
object's side of the person (``left``, ``right``, ``above``, ``below``, ``overlapping``), contact
(``touching``) or the gap between the boxes (``gap 0.4``), the height of the object's centre along
the person (``height``: 0 the top of the head, 1 the feet), the object's bottom against the
person's feet (``bottom``: 0 level, negative higher) and the object/person area ratio (``size``),
lengths in person heights (:func:`~hoi_r1.ov_hoi.spatial.spatial_relations` has every key).
``relations`` measures many pairs in one call, naming the boxes as the detection lines do
(``cup 2`` is the second-best ``cup`` of this image's detector), so a model relates every
candidate pair without writing a box.

Boxes are written and read in the text frame; a detection box is converted with
:meth:`~hoi_r1.frames.Frame.to_text` (rounded, clipped), an argument box with
:meth:`~hoi_r1.frames.Frame.from_text`.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.ov_hoi.protocol import ToolCall, ToolContext, run_tool_call
>>> ctx = ToolContext(Frame("normalized_1000", (200, 100), (200, 100)))
>>> call = ToolCall("spatial_relations", {"human_box": [0, 0, 100, 1000], "object_box": [100, 400, 200, 600]}, (0, 0))
>>> result = run_tool_call(call, ctx, default_registry())
>>> result.data["relations"]["position"], result.data["relations"]["contact"]
('right', True)
>>> result.text
'right, touching, height 0.5, bottom -0.4, size 0.2'
"""

from __future__ import annotations

import json

import numpy as np

from hoi_r1.ov_hoi.detection import HUMAN_LABELS, Detection, label_key
from hoi_r1.ov_hoi.image_ops import IMAGINE_MODES, SIDES, PlainImagineBackend, crop
from hoi_r1.ov_hoi.protocol import ToolContext, ToolError, ToolRegistry, ToolResult, ToolSpec
from hoi_r1.ov_hoi.spatial import spatial_relations

BOX_SCHEMA = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] in the answer's box coordinates",
}
MAX_CATEGORIES = 16
TOOL_NAMES = ("detect_humans", "detect_objects", "spatial_relations", "relations", "crop", "imagine")
MAX_PAIRS = 12
"""Pairs one ``relations`` call may measure."""


def default_registry(imagine_modes: tuple[str, ...] = IMAGINE_MODES) -> ToolRegistry:
    """The six OV-HOI tools; ``imagine_modes`` are the modes the ``imagine`` schema offers
    (a generative :class:`~hoi_r1.ov_hoi.image_ops.ImagineBackend` may add its own)."""
    return ToolRegistry(
        [
            ToolSpec(
                "detect_humans",
                "the people's boxes and scores.",
                {"type": "object", "properties": {}, "required": []},
                _detect_humans,
            ),
            ToolSpec(
                "detect_objects",
                "boxes and scores of objects of the named categories.",
                {
                    "type": "object",
                    "properties": {
                        "categories": {
                            "type": "array", "items": {"type": "string", "maxLength": 60},
                            "minItems": 1, "maxItems": MAX_CATEGORIES, "description": "object category names",
                        }
                    },
                    "required": ["categories"],
                },
                _detect_objects,
            ),
            ToolSpec(
                "spatial_relations",
                "the object's side of the person, touching or gap, height along the person (0 head "
                "top, 1 feet), bottom against the feet, size ratio; in person heights.",
                {
                    "type": "object",
                    "properties": {"human_box": BOX_SCHEMA, "object_box": BOX_SCHEMA},
                    "required": ["human_box", "object_box"],
                },
                _spatial,
            ),
            ToolSpec(
                "relations",
                'spatial_relations of named detections, e.g. [["person 1", "cup 1"]].',
                {
                    "type": "object",
                    "properties": {
                        "pairs": {
                            "type": "array", "minItems": 1, "maxItems": MAX_PAIRS,
                            "items": {"type": "array", "items": {"type": "string", "maxLength": 60},
                                      "minItems": 2, "maxItems": 2},
                            "description": 'pairs of names, e.g. [["person 1", "cup 1"]]',
                        }
                    },
                    "required": ["pairs"],
                },
                _relations,
            ),
            ToolSpec(
                "crop",
                "the region enlarged as a new image.",
                {
                    "type": "object",
                    "properties": {
                        "box": BOX_SCHEMA,
                        "scale": {"type": "number", "minimum": 1, "maximum": 4, "default": 2.0,
                                  "description": "zoom factor"},
                    },
                    "required": ["box"],
                },
                _crop,
            ),
            ToolSpec(
                "imagine",
                "the scene beyond the border as a new image (made up).",
                {
                    "type": "object",
                    "properties": {
                        "mode": {"type": "string", "enum": list(imagine_modes), "default": imagine_modes[0]},
                        "side": {"type": "string", "enum": list(SIDES), "default": "all"},
                        "amount": {"type": "number", "minimum": 0.05, "maximum": 1.0, "default": 0.25,
                                   "description": "added size as a fraction of the image side"},
                        "prompt": {"type": "string", "maxLength": 300, "default": "",
                                   "description": "what to imagine (used by generative backends)"},
                    },
                    "required": [],
                },
                _imagine,
            ),
        ]
    )


def _detect_humans(arguments: dict, context: ToolContext) -> ToolResult:
    return _detections_result("detect_humans", _detect(context, list(HUMAN_LABELS)), context, "person", ["person"])


def _detect_objects(arguments: dict, context: ToolContext) -> ToolResult:
    categories = list(dict.fromkeys(arguments["categories"]))
    return _detections_result("detect_objects", _detect(context, categories), context, None, categories)


def _detect(context: ToolContext, categories: list[str]) -> list[Detection]:
    if context.detector is None:
        raise ToolError("no detector is available for this image")
    return context.detector.detect(context.file_name, context.image, context.frame, categories)


def _detections_result(tool: str, found: list[Detection], context: ToolContext, label: str | None,
                       asked: list[str] | None = None) -> ToolResult:
    boxes = context.frame.to_text(np.array([d.box for d in found]).reshape(-1, 4)).tolist()
    items = [
        {"label": label or d.label.replace("_", " "), "box": box, "score": round(d.score, 2)}
        for d, box in zip(found, boxes)
    ]
    data = {"detections": items}
    return ToolResult(detection_lines(items, asked or [label or "object"]), data={**data, "boxes_original": [d.box for d in found]})


def detection_lines(items: list[dict], asked: list[str]) -> str:
    """One line per detection, numbered per label (``cup 1: [29, 70, 43, 84] 0.82``); ``none
    found: …`` when there is none.

    >>> print(detection_lines([{"label": "cup", "box": [1, 2, 3, 4], "score": 0.8},
    ...                        {"label": "cup", "box": [5, 6, 7, 8], "score": 0.5}], ["cup"]))
    cup 1: [1, 2, 3, 4] 0.8
    cup 2: [5, 6, 7, 8] 0.5
    >>> detection_lines([], ["kite", "cup"])
    'none found: kite, cup'
    """
    if not items:
        return "none found: " + ", ".join(a.replace("_", " ") for a in asked)
    names = detection_names([item["label"] for item in items])
    return "\n".join(f"{name}: {json.dumps(item['box'])} {item['score']:g}" for name, item in zip(names, items))


def detection_names(labels: list[str]) -> list[str]:
    """``label k``: the k-th detection of each label in the order given (best first).

    >>> detection_names(["cup", "Kite", "cup"])
    ['cup 1', 'kite 1', 'cup 2']
    """
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        key = label_key(label)
        seen[key] = seen.get(key, 0) + 1
        out.append(f"{key} {seen[key]}")
    return out


def relation_line(relations: dict) -> str:
    """The ``spatial_relations`` response: side, contact or gap, height, bottom and size (two
    decimals).

    >>> relation_line({"position": "left", "contact": False, "distance": 0.45, "vertical_position": 0.2,
    ...                "bottom_offset": -0.7, "size_ratio": 0.11})
    'left, gap 0.45, height 0.2, bottom -0.7, size 0.11'
    """
    r = {k: round(v, 2) + 0.0 if isinstance(v, float) else v for k, v in relations.items()}
    contact = "touching" if r["contact"] else f"gap {r['distance']:g}"
    return f"{r['position']}, {contact}, height {r['vertical_position']:g}, bottom {r['bottom_offset']:g}, size {r['size_ratio']:g}"


def _spatial(arguments: dict, context: ToolContext) -> ToolResult:
    human, obj = context.frame.from_text([arguments["human_box"], arguments["object_box"]])
    relations = spatial_relations(human, obj)
    data = {"relations": relations}
    return ToolResult(relation_line(relations), data=data)


def _relations(arguments: dict, context: ToolContext) -> ToolResult:
    boxes: dict[str, list[float]] = {}
    lines, found = [], []
    for human, obj in arguments["pairs"]:
        pair = [_named_box(name, context, boxes) for name in (human, obj)]
        relations = spatial_relations(*pair)
        found.append(relations)
        lines.append(f"{label_key(human)}, {label_key(obj)}: {relation_line(relations)}")
    return ToolResult("\n".join(lines), data={"relations": found})


def _named_box(name: str, context: ToolContext, cache: dict[str, list[float]]) -> list[float]:
    """The original-pixel box of the detection ``name`` (``label k``) in this image."""
    key = label_key(name)
    label, _, rank = key.rpartition(" ")
    if not label or not rank.isdigit() or int(rank) < 1:
        raise ToolError(f'"{name[:40]}" is not a detection name such as "person 1" or "cup 2"')
    if label in HUMAN_LABELS:
        label, key = "person", f"person {int(rank)}"
    if key not in cache:
        detected = _detect(context, list(HUMAN_LABELS) if label in HUMAN_LABELS else [label])
        names = detection_names(["person" if label in HUMAN_LABELS else d.label for d in detected])
        cache.update({n: list(d.box) for n, d in zip(names, detected)})
        if key not in cache:
            raise ToolError(f'no detection "{key}": the detector found {sum(n.rpartition(" ")[0] == label for n in names)} {label}')
    return cache[key]


def _crop(arguments: dict, context: ToolContext) -> ToolResult:
    if context.image is None:
        raise ToolError("no image is available to crop")
    box = context.frame.from_text([arguments["box"]])[0]
    view, region = crop(context.image, box, scale=arguments["scale"])
    text_region = context.frame.to_text([region])[0].tolist()
    data = {"region": text_region, "zoom": round(view.size[0] / (region[2] - region[0]), 3), "image": "attached"}
    return ToolResult(f"region {json.dumps(text_region)}, zoom {data['zoom']:g}, image attached", image=view, data=data)


def _imagine(arguments: dict, context: ToolContext) -> ToolResult:
    if context.image is None:
        raise ToolError("no image is available to imagine from")
    backend = context.imagine_backend or PlainImagineBackend()
    if arguments["mode"] not in backend.modes:
        raise ToolError(f"mode {arguments['mode']!r} is not offered; modes: {', '.join(backend.modes)}")
    view = backend(context.image, arguments["mode"], arguments["side"], float(arguments["amount"]), arguments["prompt"])
    data = {"note": view.note, "size": list(view.image.size), "offset": list(view.offset), "image": "attached"}
    text = f"{view.note} offset {json.dumps(data['offset'])}, size {json.dumps(data['size'])}, image attached"
    return ToolResult(text, image=view.image, data=data)
