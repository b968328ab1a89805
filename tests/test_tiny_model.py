"""The tiny Qwen2.5-VL factory: real architecture, Qwen tokens and template, hub-like loading."""

import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from hoi_r1.tiny import CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, TinyModelSize, build_tiny_qwen2_5_vl


def test_loads_like_a_hub_checkpoint(tiny_model_dir):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    assert model.config.text_config.num_hidden_layers == 2
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    for token in QWEN_SPECIAL_TOKENS:
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
    assert processor.chat_template == CHAT_TEMPLATE


def test_chat_template_matches_qwen_layout(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find people."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>[]</answer>"}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Find people.<|im_end|>\n"
        "<|im_start|>assistant\n<answer>[]</answer><|im_end|>\n"
    )
    prompt = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_digits_are_single_tokens(tiny_model_dir):
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    pieces = tok.tokenize("[112, 3056]")
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["1", "1", "2", "3", "0", "5", "6"]


def test_forward_and_generate_with_an_image(tiny_model_dir):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text], images=[Image.new("RGB", (112, 84), (10, 200, 30))], return_tensors="pt")
    # 112x84 → smart resize 112x84 → (8x6 patches) / (2x2 merge) = 12 image tokens
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 12
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    prompt_len = batch["input_ids"].shape[1]
    assert prompt_len < generated.shape[1] <= prompt_len + 5


def test_same_seed_same_weights(tmp_path):
    size = TinyModelSize(text_hidden=32, vision_hidden=32, vocab_size=300)
    corpus = ["a small corpus: person, ball [1, 2, 3, 4]"]
    a = Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny_qwen2_5_vl(tmp_path / "a", size, corpus, seed=3))
    b = Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny_qwen2_5_vl(tmp_path / "b", size, corpus, seed=3))
    c = Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny_qwen2_5_vl(tmp_path / "c", size, corpus, seed=4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
