"""A tiny, real-architecture Qwen2.5-VL that runs on a CPU: the model of every test and of the demo.

Nothing can be fetched from a model hub here, so :func:`build_tiny_qwen2_5_vl` makes every part
locally and saves it with ``save_pretrained``; the ordinary ``from_pretrained`` path then loads
it exactly like a hub checkpoint:

* a ``Qwen2_5_VLForConditionalGeneration`` built from a small config (2 text layers, 2 vision
  blocks, random weights, seeded);
* a byte-level BPE tokenizer trained on a small corpus (the HOI prompts and answers the project
  writes, digits, JSON punctuation), with Qwen2's pre-tokenizer rule (single digits, letters,
  punctuation runs), the Qwen special tokens (``<|im_start|>``, ``<|vision_start|>``,
  ``<|image_pad|>``…) and a Qwen-style chat template;
* a ``Qwen2VLImageProcessor`` with small pixel limits (default 112×112 images → 16 image tokens).

>>> import tempfile
>>> small = TinyModelSize(text_hidden=32, vision_hidden=32, vocab_size=300)
>>> path = build_tiny_qwen2_5_vl(tempfile.mkdtemp(), small, corpus=["person ball [1, 2]"])
>>> from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
>>> model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path)
>>> model.config.text_config.num_hidden_layers
2
>>> AutoProcessor.from_pretrained(path).tokenizer.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id
True
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hoi_r1.frames import FRAME_KINDS, Frame
from hoi_r1.grounding import build_grounding_instruction
from hoi_r1.prompts import PromptConfig, build_instruction
from hoi_r1.synthetic.scene import synthetic_vocabulary
from hoi_r1.vocab import HOIVocabulary

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Qwen2.5-VL's special tokens, in the order of their ids in the real tokenizer."""

QWEN_ADDED_TOKENS: tuple[str, ...] = ("<tool_call>", "</tool_call>", "<think>", "</think>", "<answer>", "</answer>")
"""Plain (non-special) added tokens: tool-call tags of Qwen2.5 and the answer contract's tags."""

# Qwen2's pre-tokenizer split rule: contractions, letter runs, single digits, punctuation runs,
# newlines and spaces (a documented property of the Qwen2 tokenizer).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""Qwen2-VL-style chat template: ``<|im_start|>role\\n…<|im_end|>\\n`` turns, a default system
turn, each image as ``<|vision_start|><|image_pad|><|vision_end|>``."""


@dataclass(frozen=True)
class TinyModelSize:
    """Dimensions of the tiny model.

    Args:
        text_hidden: hidden size of the language model.
        text_layers: decoder layers.
        text_heads: attention heads (head size = text_hidden / text_heads).
        text_kv_heads: key/value heads (grouped-query attention as in Qwen2.5).
        text_intermediate: MLP width of the language model.
        vision_hidden: hidden size of the vision tower.
        vision_depth: vision blocks (the last one uses full attention, the others windowed).
        vision_heads: vision attention heads.
        vision_intermediate: MLP width of the vision tower.
        vocab_size: target size of the trained BPE vocabulary (before special tokens).
        image_size: images are resized to at most this many pixels per side (both pixel limits
            of the image processor are ``image_size ** 2``).
        max_position_embeddings: context length.
    """

    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 384
    vision_hidden: int = 128
    vision_depth: int = 2
    vision_heads: int = 4
    vision_intermediate: int = 256
    vocab_size: int = 2048
    image_size: int = 112
    max_position_embeddings: int = 4096


def build_tiny_qwen2_5_vl(
    out_dir: str | Path,
    size: TinyModelSize = TinyModelSize(),
    corpus: Iterable[str] | None = None,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random Qwen2.5-VL with its processor; return ``out_dir``.

    Args:
        out_dir: directory written with ``save_pretrained`` (model, tokenizer, processor, template).
        size: model dimensions.
        corpus: texts to train the tokenizer on; default: :func:`default_corpus`.
        seed: seed of the random weights.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_tiny_processor(corpus if corpus is not None else default_corpus(), size)
    tok = processor.tokenizer
    config = tiny_config(size, vocab_size=len(tok), token_ids={t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    return save_model_and_processor(model, processor, out)


def save_model_and_processor(model, processor, out: Path) -> Path:
    """Save ``model`` and ``processor`` to ``out`` (``save_pretrained`` layout), the model's
    generation config ending at ``<|im_end|>`` or ``<|endoftext|>`` and padding with the
    tokenizer's pad token."""
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_config(size: TinyModelSize, vocab_size: int, token_ids: dict[str, int]):
    """A ``Qwen2_5_VLConfig`` of the given size whose special-token ids match the tokenizer."""
    from transformers import Qwen2_5_VLConfig

    head_dim = size.text_hidden // size.text_heads
    half = head_dim // 2  # mrope splits the rotary half into (temporal, height, width) sections
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(
        vocab_size=vocab_size,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        max_position_embeddings=size.max_position_embeddings,
        rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
        bos_token_id=token_ids["<|endoftext|>"],
        eos_token_id=token_ids["<|im_end|>"],
        pad_token_id=token_ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=size.vision_depth,
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_intermediate,
        num_heads=size.vision_heads,
        out_hidden_size=size.text_hidden,
        window_size=112,
        fullatt_block_indexes=[size.vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_processor(corpus: Iterable[str], size: TinyModelSize = TinyModelSize()):
    """A ``Qwen2_5_VLProcessor`` with a locally trained tokenizer and small pixel limits."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = train_tokenizer(corpus, size.vocab_size)
    pixels = size.image_size * size.image_size
    image_processor = Qwen2VLImageProcessor(min_pixels=min(pixels, 28 * 28 * 4), max_pixels=pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=min(pixels, 28 * 28 * 4), max_pixels=pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer with Qwen2's split rule and special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(list(corpus), trainer=trainer)
    tk.add_tokens(list(QWEN_ADDED_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def default_corpus(extra: Sequence[str] = ()) -> list[str]:
    """Tokenizer training texts: the instructions, reasoning sentences and answers the project
    writes (HICO-DET and synthetic vocabularies, every prompt style and frame, the grounding task,
    tool calls), so that the tiny tokenizer compresses the project's own prompts well."""
    hico, synthetic = HOIVocabulary.hico_det(), synthetic_vocabulary()
    texts = list(extra)
    for vocab in (hico, synthetic):
        names = [*vocab.verbs, *vocab.objects]
        texts += [n.replace("_", " ") for n in names] + names
        for i in range(vocab.num_classes):
            v, o = vocab.interactions[i]
            obj, verb = vocab.objects[o].replace("_", " "), vocab.verbs[v].replace("_", " ")
            ans = {
                "human": [i % 97, (i * 7) % 89, 100 + i % 11, 120 + i % 13],
                "object": [(i * 3) % 83, i % 71, 90 + i % 17, 110 + i % 19],
                "object class": obj,
                "verb class": [verb],
            }
            thinking = f"I see {1 + i % 3} people interacting with objects. Person {1 + i % 2} with the {obj}: {verb}."
            texts.append(f"<think>{thinking}</think><answer>{json.dumps([ans])}</answer>")
        styles = (PromptConfig(), PromptConfig(thinking_guidance=False, show_example=False))
        for kind in FRAME_KINDS:
            frame = Frame.for_image(kind, 112, 112, 3136, 12544)
            texts += [build_instruction(vocab, frame, style) for style in styles] * 8
            texts += [build_grounding_instruction(vocab, frame)] * 8
    texts += [
        " ".join(str(n) for n in range(2000)),
        '<tool_call>{"name": "detect_objects", "arguments": {"categories": ["cup"]}}</tool_call>',
        '[{"label": "person", "box": [8, 16, 32, 64]}]',
    ]
    return texts


def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 tiny-model``: build the tiny random Qwen2.5-VL into a folder."""
    parser = argparse.ArgumentParser(prog="hoi-r1 tiny-model", description="Build the tiny random Qwen2.5-VL.")
    parser.add_argument("--out", required=True, help="output directory (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--image-size", type=int, default=TinyModelSize.image_size, help="largest image side in pixels")
    args = parser.parse_args(argv)
    path = build_tiny_qwen2_5_vl(args.out, TinyModelSize(image_size=args.image_size), seed=args.seed)
    print(f"tiny Qwen2.5-VL written to {path}")
    return 0
