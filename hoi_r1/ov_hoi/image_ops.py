"""Visual tools: ``crop`` (zoom into a region) and ``imagine`` (a new view of the image).

OV-HOI / ImagineAgent (arXiv 2602.11499) lets the agent zoom into a region and ask a generative
model (BAGEL) for an edited or outpainted view when an interaction is cut off or hidden. Here:

* :func:`crop` — the region of a box, widened by a margin and clamped to the image, resized by
  ``scale`` (bicubic) within :data:`MAX_OUTPUT_SIDE`; returns the image and the region actually
  cut, in original pixels, so the model can map what it sees back to the image.
* :func:`imagine` — plain image operations standing in for a generative model: ``pad`` extends
  the canvas with the image's mean colour, ``mirror`` reflects the border outwards (a cheap
  outpaint that continues edges and textures). ``amount`` is the added size as a fraction of the
  image side, on ``side`` (``left``, ``right``, ``top``, ``bottom`` or ``all``).
* :class:`ImagineBackend` — the hook for a real generative model (see its docstring);
  :class:`PlainImagineBackend` is the built-in one.

>>> from PIL import Image
>>> image = Image.new("RGB", (100, 80), (10, 20, 30))
>>> view, region = crop(image, (90, 70, 120, 90), scale=2.0, margin=0.0)
>>> view.size, region
((20, 20), (90.0, 70.0, 100.0, 80.0))
>>> out = imagine(image, "mirror", side="left", amount=0.25)
>>> out.image.size, out.offset
((125, 80), (25, 0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

import numpy as np
from PIL import Image

MAX_OUTPUT_SIDE = 1024
"""Longest side, in pixels, of an image a visual tool returns (bounds the model's context)."""
MIN_OUTPUT_SIDE = 8
"""Shortest side of a returned image; smaller crops are enlarged to it."""
ImagineMode = Literal["pad", "mirror"]
Side = Literal["left", "right", "top", "bottom", "all"]
IMAGINE_MODES: tuple[str, ...] = ("pad", "mirror")
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom", "all")


def crop(
    image: Image.Image, box: Sequence[float], scale: float = 2.0, margin: float = 0.1
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """A zoomed crop of ``box`` (original pixels).

    Args:
        image: the original image.
        box: ``[x1, y1, x2, y2]`` of the region, original pixels.
        scale: zoom factor (output pixels per image pixel), ``0 < scale <= 8``; the output is
            shrunk further if its longer side would pass :data:`MAX_OUTPUT_SIDE`.
        margin: widen the box by this fraction of its width and height on every side.

    Returns:
        ``(crop image, (x1, y1, x2, y2) of the region cut, original pixels, integers as floats)``.

    Raises:
        ValueError: a bad box or scale, or a region that lies outside the image.
    """
    x1, y1, x2, y2 = _finite_box(box)
    if not (x1 < x2 and y1 < y2):
        raise ValueError(f"crop box must have x1 < x2 and y1 < y2, found {[x1, y1, x2, y2]}")
    if not (isinstance(scale, (int, float)) and 0 < scale <= 8):
        raise ValueError(f"crop scale must be in (0, 8], found {scale!r}")
    if not 0 <= margin <= 1:
        raise ValueError(f"crop margin must be in [0, 1], found {margin!r}")
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    width, height = image.size
    left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    right, bottom = min(width, math.ceil(x2 + mx)), min(height, math.ceil(y2 + my))
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {[x1, y1, x2, y2]} lies outside the {width}x{height} image")
    w, h = right - left, bottom - top
    zoom = min(float(scale), MAX_OUTPUT_SIDE / max(w, h))
    size = (max(MIN_OUTPUT_SIDE, round(w * zoom)), max(MIN_OUTPUT_SIDE, round(h * zoom)))
    view = image.crop((left, top, right, bottom)).resize(size, Image.Resampling.BICUBIC)
    return view, (float(left), float(top), float(right), float(bottom))


@dataclass(frozen=True)
class ImaginedView:
    """A new view of an image.

    Args:
        image: the new image.
        offset: ``(dx, dy)``: where the original image's top-left corner lies in the new image
            (``(0, 0)`` for an edit that keeps the frame), so ``x_new = x_original + dx``.
        note: one sentence for the model describing what was done.
    """

    image: Image.Image
    offset: tuple[int, int]
    note: str


def imagine(image: Image.Image, mode: ImagineMode = "mirror", side: Side = "all", amount: float = 0.25) -> ImaginedView:
    """Extend the image on ``side`` by ``amount`` of its size with plain pixels (no model).

    Args:
        image: the original image.
        mode: ``pad`` (mean colour) or ``mirror`` (reflect the border).
        side: which side grows; ``all`` grows every side.
        amount: added width (left/right) or height (top/bottom) as a fraction of the image's,
            ``0 < amount <= 1``.

    >>> from PIL import Image
    >>> im = Image.fromarray(np.array([[[0, 0, 0], [90, 90, 90]]], dtype=np.uint8))
    >>> np.asarray(imagine(im, "mirror", "right", 1.0).image)[0, :, 0].tolist()
    [0, 90, 90, 0]
    >>> np.asarray(imagine(im, "pad", "left", 0.5).image)[0, :, 0].tolist()
    [45, 0, 90]
    """
    if mode not in IMAGINE_MODES:
        raise ValueError(f"imagine mode must be one of {IMAGINE_MODES}, found {mode!r}")
    if side not in SIDES:
        raise ValueError(f"imagine side must be one of {SIDES}, found {side!r}")
    if not (isinstance(amount, (int, float)) and 0 < amount <= 1):
        raise ValueError(f"imagine amount must be in (0, 1], found {amount!r}")
    width, height = image.size
    dx, dy = max(1, round(amount * width)), max(1, round(amount * height))
    left = dx if side in ("left", "all") else 0
    right = dx if side in ("right", "all") else 0
    top = dy if side in ("top", "all") else 0
    bottom = dy if side in ("bottom", "all") else 0
    pixels = np.asarray(image.convert("RGB"))
    widths = ((top, bottom), (left, right), (0, 0))
    if mode == "mirror":
        out = np.pad(pixels, widths, mode="symmetric")
    else:
        fill = np.round(pixels.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        out = np.empty((height + top + bottom, width + left + right, 3), dtype=np.uint8)
        out[...] = fill
        out[top : top + height, left : left + width] = pixels
    what = "mirrored the border outwards" if mode == "mirror" else "padded with the mean colour"
    note = (
        f"The view was extended on {side} ({what}); it is {out.shape[1]}x{out.shape[0]} pixels and the "
        f"original image starts at ({left}, {top}) in it. The added part is made up, not observed."
    )
    return ImaginedView(Image.fromarray(out), (left, top), note)


class ImagineBackend(Protocol):
    """What the ``imagine`` tool calls: the hook for a generative view model.

    A real backend (the paper uses BAGEL for editing and outpainting) receives the original image,
    the mode the model asked for, the side and amount, and the model's free-text ``prompt``
    (what it wants to see), and returns an :class:`ImaginedView` whose ``offset`` tells where
    the original image lies in the new one. It runs outside the policy's graph (no gradients),
    typically on its own GPU or as a service; it may support more modes than ``pad`` and
    ``mirror`` (list them in ``modes`` so the tool's argument schema offers them). It should raise
    ``ValueError`` for a request it cannot serve: the tool turns that into an error message for
    the model. :class:`PlainImagineBackend` is the built-in, model-free implementation.
    """

    modes: tuple[str, ...]

    def __call__(self, image: Image.Image, mode: str, side: str, amount: float, prompt: str) -> ImaginedView:
        ...


class PlainImagineBackend:
    """:func:`imagine` as an :class:`ImagineBackend` (the ``prompt`` is ignored).

    >>> from PIL import Image
    >>> PlainImagineBackend()(Image.new("RGB", (10, 10)), "pad", "top", 0.5, "").image.size
    (10, 15)
    """

    modes: tuple[str, ...] = IMAGINE_MODES

    def __call__(self, image: Image.Image, mode: str, side: str, amount: float, prompt: str = "") -> ImaginedView:
        return imagine(image, mode, side, amount)  # type: ignore[arg-type]


def _finite_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"box must be four numbers [x1, y1, x2, y2], found {box!r:.80}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box must be four finite numbers [x1, y1, x2, y2], found {box!r:.80}")
    return values[0], values[1], values[2], values[3]
