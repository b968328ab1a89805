"""TRL's side of the SFT benchmark (:mod:`benchmarks.sft_benchmark`): ``trl.SFTTrainer`` on a
``datasets.Dataset`` of the same conversations, in our sampler's order, with TRL's own
``DataCollatorForVisionLanguageModeling`` and ``assistant_only_loss=True`` (the processor gets
:data:`ASSISTANT_MARKED_TEMPLATE`, so the loss tokens are ours); each step timed by a callback
and its batch's tokens counted by a wrapped collator.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.sft_runs import BenchSettings, RunResult, StepRecord, datamodule

ASSISTANT_MARKED_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""The tiny model's chat template (:data:`hoi_r1.tiny.CHAT_TEMPLATE`) with ``{% generation %}``
around the assistant content and its ``<|im_end|>``, which TRL's ``assistant_only_loss`` reads."""


def trl_records(model_dir: Path, world_dir: Path, settings: BenchSettings) -> list[dict]:
    """TRL's dataset rows, in our sampler's order: the same messages our collator renders, and the
    image file (decoded by ``datasets`` when a row is read, as ours decodes it when an item is read)."""
    from hoi_r1.answer_render import render_answer
    from hoi_r1.prompts import build_instruction, build_messages
    from hoi_r1.sampling import ResumableSampler

    dm = datamodule(model_dir, world_dir, settings)
    collator, dataset = dm.sft_collator(), dm.datasets["train"]
    order = [index for index, _, _ in ResumableSampler(len(dataset), seed=settings.seed)]
    rows = []
    for index in order:
        sample = dataset.samples[index]
        frame = collator.frame_for(sample)
        reasoning = dataset.reasonings.get(sample.file_name)
        answer = render_answer(sample, dm.vocab, frame, reasoning=reasoning)
        messages = build_messages(build_instruction(dm.vocab, frame, dm.prompt), answer=answer)
        rows.append({"messages": messages, "images": [str(sample.image_path)]})
    return rows



class _CountingCollator:
    """Wraps TRL's collator and records each batch's (real tokens, answer tokens), in order."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.counts: list[tuple[int, int]] = []

    def __call__(self, examples):
        batch = self.collator(examples)
        self.counts.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
        return batch


def run_trl(model_dir: Path, world_dir: Path, settings: BenchSettings, output_dir: str | Path) -> RunResult:
    """Train with TRL's SFTTrainer on the same conversations; time every optimizer step."""
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from hoi_r1.models import ModelSettings, load_model, load_processor

    result = RunResult("TRL SFTTrainer")
    rows = trl_records(model_dir, world_dir, settings)
    dataset = datasets.Dataset.from_list(rows).cast_column("images", datasets.List(datasets.Image(mode="RGB")))
    processor = load_processor(str(model_dir))
    processor.chat_template = ASSISTANT_MARKED_TEMPLATE

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self._begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            result.steps.append(StepRecord(self._begin, time.perf_counter(), 0, 0))

    config = SFTConfig(
        output_dir=str(output_dir),
        max_steps=settings.total_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=settings.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=1.0,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        seed=settings.seed,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        max_length=None,
        packing=False,
        padding_free=False,
        assistant_only_loss=True,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
    )
    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=processor, callbacks=[Timer()]
    )
    counter = _CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    trainer.train()
    # Loaders fetch one batch ahead, so the collator may have run once more than there are steps.
    for step, (tokens, answer) in zip(result.steps, counter.counts):
        step.tokens, step.answer_tokens = tokens, answer
    result.model = trainer.model
    return result
