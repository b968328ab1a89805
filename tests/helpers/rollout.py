"""Rollout helpers: a generation batch of prompts on images of different sizes."""

from PIL import Image

from hoi_r1.prompts import build_messages


def prompt_batch(processor, sizes):
    """A left-padded generation batch of images of different sizes (different patch counts)."""
    images = [Image.new("RGB", size, color=(40 * i, 90, 200 - 30 * i)) for i, size in enumerate(sizes)]
    texts = [processor.apply_chat_template(build_messages(f"find pairs {'x ' * i}"), tokenize=False,
                                           add_generation_prompt=True) for i in range(len(sizes))]
    return left_padded(processor, images, texts), images, texts


def left_padded(processor, images, texts) -> dict:
    """The processor's batch of ``texts`` and ``images`` with left padding (as generation needs)."""
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        return dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    finally:
        tok.padding_side = side
