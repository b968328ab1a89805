"""The real Qwen2.5-VL sizes, from their published configurations, with random weights and a local
processor: the architecture of the shipped GPU configs, buildable without a model hub.

:data:`REFERENCE_CONFIGS` holds the published ``config.json`` values of

* ``qwen2_5_vl_3b``: https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json
* ``qwen2_5_vl_7b``: https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json

in the published (flat) layout. The Hub files spell out only part of ``vision_config``
(``hidden_size`` 1280, ``in_chans`` 3, ``out_hidden_size`` — 2048 for 3B, absent for 7B where the
class default 3584 applies —, ``spatial_patch_size`` 14, ``tokens_per_second`` 2); every other
vision value is the ``Qwen2_5_VLVisionConfig`` default that all Qwen2.5-VL sizes share (``depth``
32, ``intermediate_size`` 3420, ``num_heads`` 16, ``patch_size`` 14, ``spatial_merge_size`` 2,
``temporal_patch_size`` 2, ``window_size`` 112, ``fullatt_block_indexes`` [7, 15, 23, 31],
``hidden_act`` silu). They are written out here so the architecture does not move with
transformers' defaults.

:func:`reference_processor` gives the model a tokenizer whose ids match the published ones: the
tiny model's locally trained BPE (:func:`hoi_r1.tiny.build_tiny_processor`) renumbered so that
the Qwen special tokens sit at their real ids (``<|endoftext|>`` 151643 … ``<|video_pad|>``
151656, ``<tool_call>`` 151657), the unused ids below them filled with unreachable placeholder
entries (no merge produces them). The model's 151,936-row embedding is therefore the real one,
and the image / vision token ids of the config are the tokenizer's.

>>> config = reference_config("qwen2_5_vl_3b")
>>> config.text_config.hidden_size, config.text_config.num_hidden_layers, config.vision_config.depth
(2048, 36, 32)
>>> config.image_token_id, config.text_config.vocab_size, config.tie_word_embeddings
(151655, 151936, True)
>>> sum(p.numel() for p in build_reference_model("qwen2_5_vl_3b", device="meta").parameters())
3754622976
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Sequence

import torch

from hoi_r1.tiny import CHAT_TEMPLATE, QWEN_ADDED_TOKENS, QWEN_SPECIAL_TOKENS, TinyModelSize, build_tiny_processor
from hoi_r1.tiny import default_corpus, save_model_and_processor

_VISION_SHARED = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
"""The vision tower every Qwen2.5-VL size shares (only ``out_hidden_size`` differs)."""

_SPECIAL_IDS = {
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
}

REFERENCE_CONFIGS: dict[str, dict] = {
    "qwen2_5_vl_3b": {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 11008,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "num_attention_heads": 16,
        "num_hidden_layers": 36,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 151936,
        **_SPECIAL_IDS,
        "vision_config": {**_VISION_SHARED, "model_type": "qwen2_5_vl", "out_hidden_size": 2048},
    },
    "qwen2_5_vl_7b": {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 18944,
        "max_position_embeddings": 128000,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 152064,
        **_SPECIAL_IDS,
        "vision_config": {**_VISION_SHARED, "model_type": "qwen2_5_vl", "out_hidden_size": 3584},
    },
}
"""Published ``config.json`` values (flat layout) of Qwen2.5-VL-3B-Instruct and -7B-Instruct."""

HUB_NAMES: dict[str, str] = {
    "qwen2_5_vl_3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2_5_vl_7b": "Qwen/Qwen2.5-VL-7B-Instruct",
}
"""The Hub repository each reference configuration was published in."""

PLACEHOLDER = "<|unused_{}|>"
"""Name of the placeholder vocabulary entries that fill ids no trained token takes."""


def reference_config(name: str):
    """The ``Qwen2_5_VLConfig`` of a published size (``qwen2_5_vl_3b`` or ``qwen2_5_vl_7b``).

    Args:
        name: a key of :data:`REFERENCE_CONFIGS`.
    """
    from transformers import Qwen2_5_VLConfig

    if name not in REFERENCE_CONFIGS:
        raise ValueError(f"unknown reference model {name!r}; known: {sorted(REFERENCE_CONFIGS)}")
    values = copy.deepcopy(REFERENCE_CONFIGS[name])
    values.pop("architectures")
    values.pop("model_type")
    values["dtype"] = values.pop("torch_dtype")
    config = Qwen2_5_VLConfig(**values)
    config.architectures = list(REFERENCE_CONFIGS[name]["architectures"])
    return config


def build_reference_model(
    name: str, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", seed: int = 0
):
    """A ``Qwen2_5_VLForConditionalGeneration`` of a published size with random weights.

    Args:
        name: a key of :data:`REFERENCE_CONFIGS`.
        dtype: parameter dtype (bf16, as published).
        device: ``cpu`` allocates and randomly initialises every weight (3B: 7.5 GB in bf16);
            ``meta`` builds the same modules without storage (parameter counts, shapes).
        seed: seed of the random initialisation.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = reference_config(name)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def reference_processor(size: TinyModelSize = TinyModelSize(), corpus: Sequence[str] | None = None, processor=None):
    """The tiny model's processor with its tokenizer renumbered to Qwen2.5's special-token ids.

    Args:
        size: pixel limits of the image processor (``size.image_size`` per side) and the BPE
            vocabulary size of the trained tokenizer.
        corpus: tokenizer training texts (default: :func:`hoi_r1.tiny.default_corpus`).
        processor: an existing tiny processor to renumber instead of training one.

    Ordinary tokens keep their order from id 0; :data:`PLACEHOLDER` entries fill the ids up to
    151642; the Qwen special tokens take 151643…151656 in their published order, then the added
    tokens (``<tool_call>``, ``</tool_call>``, ``<think>``…) follow.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor

    if processor is None:
        processor = build_tiny_processor(corpus if corpus is not None else default_corpus(), size)
    first_special = _SPECIAL_IDS["bos_token_id"]
    state = json.loads(processor.tokenizer.backend_tokenizer.to_str())
    special = set(QWEN_SPECIAL_TOKENS) | set(QWEN_ADDED_TOKENS)
    ordinary = [t for t, _ in sorted(state["model"]["vocab"].items(), key=lambda kv: kv[1]) if t not in special]
    if len(ordinary) > first_special:
        raise ValueError(f"the tokenizer has {len(ordinary)} ordinary tokens; at most {first_special} fit below the special ids")
    vocab = {t: i for i, t in enumerate(ordinary)}
    vocab.update({PLACEHOLDER.format(i): i for i in range(len(ordinary), first_special)})
    new_ids = {t: first_special + i for i, t in enumerate([*QWEN_SPECIAL_TOKENS, *QWEN_ADDED_TOKENS])}
    state["model"]["vocab"] = vocab
    state["added_tokens"] = sorted(
        ({**entry, "id": new_ids[entry["content"]]} for entry in state["added_tokens"]), key=lambda e: e["id"]
    )
    old = processor.tokenizer
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)),
        eos_token=old.eos_token,
        pad_token=old.pad_token,
        unk_token=None,
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        clean_up_tokenization_spaces=False,
        model_max_length=old.model_max_length,
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    for token, expected in new_ids.items():
        if tokenizer.convert_tokens_to_ids(token) != expected:
            raise RuntimeError(f"renumbering failed: {token} has id {tokenizer.convert_tokens_to_ids(token)}, not {expected}")
    return Qwen2_5_VLProcessor(
        image_processor=processor.image_processor,
        tokenizer=tokenizer,
        video_processor=processor.video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def save_reference_model(
    out_dir: str | Path, name: str = "qwen2_5_vl_3b", size: TinyModelSize = TinyModelSize(), seed: int = 0
) -> Path:
    """Build a reference model (random bf16 weights) and its processor; ``save_pretrained`` both.

    Args:
        out_dir: directory written (3B: about 7.5 GB of safetensors).
        name: a key of :data:`REFERENCE_CONFIGS`.
        size: pixel limits and tokenizer size of the local processor.
        seed: seed of the random weights.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = reference_processor(size)
    model = build_reference_model(name, seed=seed)
    return save_model_and_processor(model, processor, out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hoi_r1.reference_models --out DIR [--model qwen2_5_vl_3b]``: save a random reference model."""
    parser = argparse.ArgumentParser(prog="python -m hoi_r1.reference_models", description=main.__doc__)
    parser.add_argument("--out", required=True, help="output directory (save_pretrained layout)")
    parser.add_argument("--model", default="qwen2_5_vl_3b", choices=sorted(REFERENCE_CONFIGS))
    parser.add_argument("--image-size", type=int, default=TinyModelSize.image_size, help="largest image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = save_reference_model(args.out, args.model, TinyModelSize(image_size=args.image_size), args.seed)
    print(f"{args.model} ({HUB_NAMES[args.model]} architecture, random weights) written to {path} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
