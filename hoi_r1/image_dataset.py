"""Images with their annotations, as a map-style dataset.

Images open with PIL, follow their EXIF orientation and become RGB. The annotation's image size
is the original frame of every box; an image whose decoded size disagrees is an error that names
the file, because the boxes would not line up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from hoi_r1.sample import HOISample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class ImageItem:
    """One dataset item: the annotations, the decoded image, an optional reasoning text, an
    optional tool-using trace (OV-HOI cold start, :mod:`hoi_r1.ov_hoi.cold_start`), and the
    sampler ticket ``(index, epoch, position)`` it was drawn with (training order bookkeeping)."""

    sample: HOISample
    image: Image.Image
    reasoning: str | None = None
    ticket: tuple[int, int, int] | None = None
    trace: dict | None = None


class HOIImageDataset(Dataset):
    """Samples plus image decoding.

    Args:
        samples: annotations of each image.
        reasonings: per ``file_name``, a reasoning text for the SFT target (thinking distillation).
        traces: per ``file_name``, a cold-start record (tool-using conversation).
    """

    def __init__(
        self, samples: list[HOISample], reasonings: dict[str, str] | None = None, traces: dict[str, dict] | None = None
    ) -> None:
        self.samples = samples
        self.reasonings = reasonings or {}
        self.traces = traces or {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int, int]) -> ImageItem:
        ticket = key if isinstance(key, tuple) else None
        index = key[0] if isinstance(key, tuple) else key
        sample = self.samples[index]
        image = load_image(sample.image_path)
        if sample.width and sample.height and image.size != (sample.width, sample.height):
            raise ValueError(
                f"{sample.image_path}: image is {image.size[0]}x{image.size[1]} but its annotation says "
                f"{sample.width}x{sample.height}"
            )
        return ImageItem(sample, image, self.reasonings.get(sample.file_name), ticket, self.traces.get(sample.file_name))


def load_image(path: str | Path) -> Image.Image:
    """Open an image, apply its EXIF orientation, convert to RGB; errors name the file."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"image file {path} cannot be read: {e}") from None


def image_folder_samples(folder: str | Path) -> list[HOISample]:
    """Samples without annotations for every image in ``folder`` (sorted by name), for predict."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"predict image folder {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"predict image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    samples = []
    for i, path in enumerate(files):
        image = load_image(path)
        samples.append(HOISample(i, path.name, str(path), image.size[0], image.size[1]))
    return samples


def read_reasonings(path: str | Path) -> dict[str, str]:
    """Read a JSONL of ``{"file_name": ..., "reasoning": ...}`` lines (thinking distillation)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"reasoning file {path} does not exist")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out[str(record["file_name"])] = str(record["reasoning"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}, line {n}: expected {{'file_name', 'reasoning'}} JSON ({e})") from None
    return out
