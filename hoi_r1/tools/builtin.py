"""The five OV-HOI tools as :class:`~hoi_r1.tools.protocol.ToolSpec` s: argument schemas (shown to
the model), and the glue from the conversation's text frame to the pure implementations
(:mod:`hoi_r1.tools.detection`, :mod:`hoi_r1.tools.spatial`, :mod:`hoi_r1.tools.image_ops`).

=====================  ==========================================  ================================
tool                   arguments                                   result
=====================  ==========================================  ================================
``detect_humans``      none                                        ``{"detections": [{label, box, score}]}``
``detect_objects``     ``categories``: list of names (any)         same, for those categories
``spatial_relations``  ``human_box``, ``object_box``               ``{"relations": {...}}``
``crop``               ``box``, ``scale`` (default 2)              ``{"region": box, "zoom": s}`` + image
``imagine``            ``mode``, ``side``, ``amount``, ``prompt``  ``{"note": ..., "size": ...}`` + image
=====================  ==========================================  ================================

Boxes are written and read in the text frame; a detection box is converted with
:meth:`~hoi_r1.frames.Frame.to_text` (rounded, clipped), an argument box with
:meth:`~hoi_r1.frames.Frame.from_text`.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.tools.protocol import ToolCall, ToolContext, run_tool_call
>>> ctx = ToolContext(Frame("normalized_1000", (200, 100), (200, 100)))
>>> call = ToolCall("spatial_relations", {"human_box": [0, 0, 100, 1000], "object_box": [100, 400, 200, 600]}, (0, 0))
>>> result = run_tool_call(call, ctx, default_registry())
>>> result.data["relations"]["position"], result.data["relations"]["contact"]
('right', True)
"""

from __future__ import annotations

import json

import numpy as np

from hoi_r1.tools.detection import HUMAN_LABELS, Detection
from hoi_r1.tools.image_ops import IMAGINE_MODES, SIDES, PlainImagineBackend, crop
from hoi_r1.tools.protocol import ToolContext, ToolError, ToolRegistry, ToolResult, ToolSpec
from hoi_r1.tools.spatial import spatial_relations

BOX_SCHEMA = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] in the answer's box coordinates",
}
MAX_CATEGORIES = 16
TOOL_NAMES = ("detect_humans", "detect_objects", "spatial_relations", "crop", "imagine")


def default_registry(imagine_modes: tuple[str, ...] = IMAGINE_MODES) -> ToolRegistry:
    """The five OV-HOI tools; ``imagine_modes`` are the modes the ``imagine`` schema offers
    (a generative :class:`~hoi_r1.tools.image_ops.ImagineBackend` may add its own)."""
    return ToolRegistry(
        [
            ToolSpec(
                "detect_humans",
                "Detect every person in the image; returns their boxes and confidence scores.",
                {"type": "object", "properties": {}, "required": []},
                _detect_humans,
            ),
            ToolSpec(
                "detect_objects",
                "Detect objects of the given categories (any names); returns labels, boxes and scores.",
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
                "Measure how an object lies relative to a person: gap and centre distance in person heights, "
                "position (left/right/above/below/overlapping), IoU, containment, contact, size ratio, and the "
                "object's height along the person (0 = top of the head, 1 = feet).",
                {
                    "type": "object",
                    "properties": {"human_box": BOX_SCHEMA, "object_box": BOX_SCHEMA},
                    "required": ["human_box", "object_box"],
                },
                _spatial,
            ),
            ToolSpec(
                "crop",
                "Zoom into a region: returns the region, slightly widened, enlarged by `scale` as a new image.",
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
                "Imagine the scene beyond the image border (the added part is made up, not observed); "
                "returns the extended view as a new image.",
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
    return _detections_result("detect_humans", _detect(context, list(HUMAN_LABELS)), context, "person")


def _detect_objects(arguments: dict, context: ToolContext) -> ToolResult:
    categories = list(dict.fromkeys(arguments["categories"]))
    return _detections_result("detect_objects", _detect(context, categories), context, None)


def _detect(context: ToolContext, categories: list[str]) -> list[Detection]:
    if context.detector is None:
        raise ToolError("no detector is available for this image")
    return context.detector.detect(context.file_name, context.image, context.frame, categories)


def _detections_result(tool: str, found: list[Detection], context: ToolContext, label: str | None) -> ToolResult:
    boxes = context.frame.to_text(np.array([d.box for d in found]).reshape(-1, 4)).tolist()
    items = [
        {"label": label or d.label.replace("_", " "), "box": box, "score": round(d.score, 2)}
        for d, box in zip(found, boxes)
    ]
    data = {"detections": items}
    return ToolResult(json.dumps(data), data={**data, "boxes_original": [d.box for d in found]})


def _spatial(arguments: dict, context: ToolContext) -> ToolResult:
    human, obj = context.frame.from_text([arguments["human_box"], arguments["object_box"]])
    relations = spatial_relations(human, obj)
    data = {"relations": relations}
    return ToolResult(json.dumps(data), data=data)


def _crop(arguments: dict, context: ToolContext) -> ToolResult:
    if context.image is None:
        raise ToolError("no image is available to crop")
    box = context.frame.from_text([arguments["box"]])[0]
    view, region = crop(context.image, box, scale=arguments["scale"])
    text_region = context.frame.to_text([region])[0].tolist()
    data = {"region": text_region, "zoom": round(view.size[0] / (region[2] - region[0]), 3), "image": "attached"}
    return ToolResult(json.dumps(data), image=view, data=data)


def _imagine(arguments: dict, context: ToolContext) -> ToolResult:
    if context.image is None:
        raise ToolError("no image is available to imagine from")
    backend = context.imagine_backend or PlainImagineBackend()
    if arguments["mode"] not in backend.modes:
        raise ToolError(f"mode {arguments['mode']!r} is not offered; modes: {', '.join(backend.modes)}")
    view = backend(context.image, arguments["mode"], arguments["side"], float(arguments["amount"]), arguments["prompt"])
    data = {"note": view.note, "size": list(view.image.size), "offset": list(view.offset), "image": "attached"}
    return ToolResult(json.dumps(data), image=view.image, data=data)
