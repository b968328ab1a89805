"""Coordinate frames of the answer text, and the Qwen2-VL image resize that defines one of them.

Inside the program every box is ``xyxy`` float in pixels of the *original* image.
The text a model reads and writes uses one of three frames:

* ``absolute_resized`` — integer pixels of the image *after* the processor's smart-resize
  (Qwen2.5-VL grounds boxes in the pixels it was shown);
* ``normalized_1000`` — integers 0..1000, the image width and height each mapped to 1000
  (Qwen2-VL, Qwen3-VL);
* ``absolute_original`` — integer pixels of the original image.

:class:`Frame` converts both ways: :meth:`Frame.to_text` scales, rounds half up and clips to
the text frame (rendering targets); :meth:`Frame.from_text` scales back to float original pixels
without rounding or clipping (parsing model output; the parser reports bad boxes itself). A
rendered box therefore round-trips to within half a text unit, ``0.5 * original / text`` pixels.

:func:`smart_resize` follows the rule of the Qwen2-VL image processor in transformers
(``image_processing_qwen2_vl.smart_resize``): round each side to a multiple of ``factor``
(Python's ``round``, so halves go to the even multiple); if the area then exceeds
``max_pixels``, shrink both sides by ``sqrt(h * w / max_pixels)`` and floor to the factor (at
least one factor); if it falls below ``min_pixels``, grow by ``sqrt(min_pixels / (h * w))`` and
ceil to the factor. An aspect ratio above 200 is refused, as there.

>>> smart_resize(480, 640)
(476, 644)
>>> f = Frame.for_image("absolute_resized", width=640, height=480)
>>> f.resized_size, f.text_size
((644, 476), (644, 476))
>>> f.to_text([[0, 0, 320, 240]]).tolist()
[[0, 0, 322, 238]]
>>> Frame.for_image("normalized_1000", 640, 480).to_text([[0, 0, 320, 240]]).tolist()
[[0, 0, 500, 500]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

FrameKind = Literal["absolute_resized", "normalized_1000", "absolute_original"]
FRAME_KINDS: tuple[str, ...] = ("absolute_resized", "normalized_1000", "absolute_original")
PATCH_FACTOR = 28
"""Qwen2/2.5-VL: patch size 14 times spatial merge size 2."""
DEFAULT_MIN_PIXELS = 56 * 56
"""The Qwen2-VL image processor's default ``min_pixels`` (``size["shortest_edge"]``)."""
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
"""The Qwen2-VL image processor's default ``max_pixels`` (``size["longest_edge"]``)."""
NORMALIZED_SCALE = 1000
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = PATCH_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Height and width the Qwen2-VL image processor resizes an image to.

    Args:
        height: original image height in pixels.
        width: original image width in pixels.
        factor: both output sides are multiples of it (patch size x merge size).
        min_pixels: smallest allowed output area.
        max_pixels: largest allowed output area.

    Returns:
        ``(resized height, resized width)`` — the order of transformers' function.

    Raises:
        ValueError: a side is not positive, or the aspect ratio exceeds 200.

    >>> smart_resize(1080, 1920, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
    (728, 1316)
    >>> smart_resize(10, 10)
    (56, 56)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, found height={height}, width={width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio must be at most {MAX_ASPECT_RATIO}, found {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        shrink = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / shrink / factor) * factor)
        w_bar = max(factor, math.floor(width / shrink / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        grow = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * grow / factor) * factor
        w_bar = math.ceil(width * grow / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Frame:
    """The coordinate frame of boxes in prompt and answer text, for one image.

    Args:
        kind: ``absolute_resized``, ``normalized_1000`` or ``absolute_original``.
        original_size: ``(width, height)`` of the original image in pixels.
        resized_size: ``(width, height)`` the processor resizes the image to (equal to
            ``original_size`` when unknown or unused).
    """

    kind: FrameKind
    original_size: tuple[int, int]
    resized_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.kind not in FRAME_KINDS:
            raise ValueError(f"frame kind must be one of {FRAME_KINDS}, found {self.kind!r}")
        for name in ("original_size", "resized_size"):
            w, h = getattr(self, name)
            if not (w > 0 and h > 0):
                raise ValueError(f"frame {name} must be positive (width, height), found {(w, h)}")

    @classmethod
    def for_image(
        cls,
        kind: FrameKind,
        width: int,
        height: int,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        factor: int = PATCH_FACTOR,
    ) -> "Frame":
        """The frame of an image of ``width`` x ``height`` original pixels, with the resized size
        computed by :func:`smart_resize` under the processor's settings."""
        rh, rw = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        return cls(kind=kind, original_size=(int(width), int(height)), resized_size=(rw, rh))

    @property
    def text_size(self) -> tuple[int, int]:
        """``(width, height)`` of the image in text units."""
        if self.kind == "absolute_resized":
            return self.resized_size
        if self.kind == "normalized_1000":
            return (NORMALIZED_SCALE, NORMALIZED_SCALE)
        return self.original_size

    @property
    def scale(self) -> tuple[float, float]:
        """Text units per original pixel along x and y."""
        (tw, th), (ow, oh) = self.text_size, self.original_size
        return tw / ow, th / oh

    def to_text(self, boxes_xyxy_original) -> np.ndarray:
        """Original-pixel boxes ``(N, 4)`` → integer text boxes ``(N, 4)``, rounded half up and
        clipped to ``[0, text width] x [0, text height]``."""
        boxes = _as_boxes(boxes_xyxy_original)
        sx, sy = self.scale
        tw, th = self.text_size
        scaled = boxes * np.array([sx, sy, sx, sy])
        rounded = np.floor(scaled + 0.5)
        clipped = np.clip(rounded, 0, np.array([tw, th, tw, th], dtype=np.float64))
        return clipped.astype(np.int64)

    def from_text(self, boxes_text) -> np.ndarray:
        """Text boxes ``(N, 4)`` (any numbers) → float64 original-pixel boxes ``(N, 4)``; no
        rounding and no clipping. Overflow gives ``inf``, which callers treat as a bad box."""
        boxes = _as_boxes(boxes_text)
        sx, sy = self.scale
        with np.errstate(over="ignore", invalid="ignore"):
            return boxes / np.array([sx, sy, sx, sy])

    def describe(self) -> str:
        """One sentence telling a model which frame its boxes are in (used by the prompts).

        >>> Frame("normalized_1000", (640, 480), (644, 476)).describe()
        'Give every box as [x1, y1, x2, y2] with integer coordinates from 0 to 1000, where 0 is the left or top edge of the image and 1000 the right or bottom edge.'
        """
        if self.kind == "normalized_1000":
            return (
                "Give every box as [x1, y1, x2, y2] with integer coordinates from 0 to 1000, where 0 is "
                "the left or top edge of the image and 1000 the right or bottom edge."
            )
        w, h = self.text_size
        return (
            f"Give every box as [x1, y1, x2, y2] in integer pixels of this {w}x{h} image "
            "(origin at the top-left corner, x to the right, y down)."
        )


def _as_boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), found {arr.shape}")
    return arr
