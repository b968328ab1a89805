"""Drawing the synthetic world with PIL: backgrounds, stick-figure people and simple objects.

Every shape is drawn into a one-bit mask exactly as large as its box, so nothing can leave the
box, and each shape touches all four sides of its mask — the box is the drawn extent
(:func:`shape_mask` is tested for that at many sizes). A mask depends only on (shape, width,
height, mirrored) and is cached. Drawing is aliasing-free (no antialiasing), so every shape
pixel has exactly its class colour. Order: ridden objects, people (higher feet first), other
objects — a rider covers the top of what they ride.

>>> m = shape_mask("ball", 16, 16)
>>> m.size, m.getbbox()
((16, 16), (0, 0, 16, 16))
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from hoi_r1.synthetic.scene import OBJECTS, VERBS, Background, Scene

COLORS: dict[str, tuple[int, int, int]] = {
    "person": (30, 70, 210),  # blue
    "ball": (220, 30, 30),  # red
    "bicycle": (25, 25, 25),  # black
    "box": (235, 135, 0),  # orange
    "cup": (190, 0, 190),  # magenta
    "dog": (125, 70, 25),  # brown
    "kite": (0, 160, 145),  # teal
}
"""One flat colour per class, dark or saturated against the light backgrounds."""
NOISE_AMPLITUDE = 20
"""Grey noise of the ``noise`` background: uniform in ``[-A, A]`` added to every channel."""
RAMP_RANGE = (160, 250)
"""Red and green values of the ``ramp`` background at its left/top and right/bottom edges."""


def render_scene(scene: Scene) -> Image.Image:
    """The RGB image of a scene."""
    image = Image.fromarray(background_array(scene.background, scene.width, scene.height), "RGB")
    ridden = {o for _, o, v in scene.pairs if VERBS[v] == "ride"}
    order = [scene.objects[o] for o in sorted(ridden)] + list(scene.people)
    order += [obj for o, obj in enumerate(scene.objects) if o not in ridden]
    for entity in order:
        name = OBJECTS[entity.label]
        x1, y1, x2, y2 = entity.box
        mask = shape_mask(name, x2 - x1, y2 - y1, entity.mirrored)
        image.paste(COLORS[name], (x1, y1, x2, y2), mask)
    return image


def background_array(background: Background, width: int, height: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 pixels of a background."""
    a = np.asarray(background.color_a, dtype=np.float32)
    if background.style == "gradient":
        xs = np.arange(width, dtype=np.float32)[None, :] * np.float32(np.cos(background.angle))
        ys = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(background.angle))
        t = xs + ys  # (height, width) position along the gradient direction
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        b = np.asarray(background.color_b, dtype=np.float32)
        return np.rint(a + t[..., None] * (b - a)).astype(np.uint8)
    if background.style == "ramp":
        low, high = RAMP_RANGE
        red = low + (high - low) * np.arange(width, dtype=np.float32) / max(width - 1, 1)
        green = low + (high - low) * np.arange(height, dtype=np.float32) / max(height - 1, 1)
        pixels = np.empty((height, width, 3), dtype=np.float32)
        pixels[..., 0], pixels[..., 1], pixels[..., 2] = red[None, :], green[:, None], 215
        return np.rint(pixels).astype(np.uint8)
    pixels = np.broadcast_to(a.astype(np.int16), (height, width, 3))
    if background.style == "noise":
        rng = np.random.default_rng(background.noise_seed)
        noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, (height, width, 1), dtype=np.int16)
        pixels = np.clip(pixels + noise, 0, 255)
    elif background.style != "flat":
        raise ValueError(f"unknown background style {background.style!r}; expected flat, noise, gradient or ramp")
    return np.ascontiguousarray(pixels, dtype=np.uint8)


@lru_cache(maxsize=4096)
def shape_mask(name: str, width: int, height: int, mirrored: bool = False) -> Image.Image:
    """A ``1``-mode mask of size ``(width, height)`` with the shape of class ``name``; its
    bounding box is the whole mask."""
    try:
        draw_shape = _SHAPES[name]
    except KeyError:
        raise ValueError(f"no shape for class {name!r}; known: {sorted(_SHAPES)}") from None
    if width < 4 or height < 4:
        raise ValueError(f"a {name} needs at least 4x4 pixels, found {width}x{height}")
    mask = Image.new("1", (width, height), 0)
    draw_shape(ImageDraw.Draw(mask), width - 1, height - 1)  # last column, last row
    return ImageOps.mirror(mask) if mirrored else mask


def _stroke(w: int, h: int) -> int:
    return max(2, round(min(w, h) / 10))


def _person(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """Head disc at the top, torso, arms to the hands at the side edges, legs spread to the
    bottom corners (so a kicked object touches a foot)."""
    s = _stroke(w, h)
    head = max(2, min(w, round(h / 4)))
    hx = (w - head) / 2
    d.ellipse((hx, 0, hx + head, head), fill=1)
    hip, hand = max(head, round(0.62 * h)), round(0.55 * h)
    d.rectangle((round(0.3 * w), head, round(0.7 * w), hip), fill=1)
    for x_shoulder, x_hand in ((0.3 * w, 0), (0.7 * w, w)):
        d.line((x_shoulder, head + s, x_hand, hand), fill=1, width=s)
        d.rectangle((x_hand - s / 2, hand - s / 2, x_hand + s / 2, hand + s / 2), fill=1)
    for x_hip, x_foot in ((0.4 * w, 0.05 * w), (0.6 * w, 0.95 * w)):
        d.line((x_hip, hip, x_foot, h), fill=1, width=s)
        d.rectangle((x_foot - s / 2, h - s / 2, x_foot + s / 2, h), fill=1)


def _ball(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.ellipse((0, 0, w, h), fill=1)


def _box(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """A crate: filled square with a lid line of background colour."""
    d.rectangle((0, 0, w, h), fill=1)
    if h >= 12:
        d.line((1, round(h / 3), w - 1, round(h / 3)), fill=0, width=1)


def _cup(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """Body narrowing downwards, handle ring on the right."""
    body = 0.72 * w
    d.polygon(((0, 0), (body, 0), (body * 0.85, h), (body * 0.15, h)), fill=1)
    s = max(1, _stroke(w, h) - 1)
    d.ellipse((body * 0.6, 0.2 * h, w, 0.7 * h), outline=1, width=s)


def _bicycle(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """Two wheel rings, a frame, a saddle and handlebars on the top edge."""
    s = _stroke(w, h)
    r = min(0.6 * h, 0.42 * w)
    d.ellipse((0, h - r, r, h), outline=1, width=s)
    d.ellipse((w - r, h - r, w, h), outline=1, width=s)
    back, front = (r / 2, h - r / 2), (w - r / 2, h - r / 2)
    seat, head = (0.35 * w, 0.15 * h), (0.72 * w, 0.1 * h)
    d.line((*back, *seat, *head, *front), fill=1, width=s)
    d.line((*back, w / 2, h - r / 2, *seat), fill=1, width=s)
    d.rectangle((0.25 * w, 0, 0.45 * w, s - 1), fill=1)
    d.rectangle((0.62 * w, 0, 0.88 * w, s - 1), fill=1)


def _dog(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """Body, head with a snout on the right, four legs, tail up to the top left corner."""
    s = _stroke(w, h)
    d.ellipse((0.12 * w, 0.3 * h, 0.82 * w, 0.72 * h), fill=1)
    d.ellipse((0.62 * w, 0, 0.92 * w, 0.5 * h), fill=1)
    d.rectangle((0.85 * w, 0.2 * h, w, 0.38 * h), fill=1)
    for x in (0.18, 0.32, 0.6, 0.72):
        d.rectangle((x * w, 0.6 * h, x * w + s - 1, h), fill=1)
    d.line((0.2 * w, 0.45 * h, 0, 0), fill=1, width=s)
    d.rectangle((0, 0, s - 1, s - 1), fill=1)


def _kite(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    """A diamond with a zig-zag tail down to the bottom edge."""
    cx, low = w / 2, 0.72 * h
    d.polygon(((cx, 0), (w, 0.36 * h), (cx, low), (0, 0.36 * h)), fill=1)
    d.line((cx, low, cx - 0.2 * w, 0.85 * h, cx, h), fill=1, width=max(1, _stroke(w, h) - 1))


_SHAPES = {
    "person": _person,
    "ball": _ball,
    "box": _box,
    "cup": _cup,
    "bicycle": _bicycle,
    "dog": _dog,
    "kite": _kite,
}
