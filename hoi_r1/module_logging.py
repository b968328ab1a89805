"""What the LightningModules show a person: example images with drawn pairs and completions in
TensorBoard, and per-image prediction records for ``predict``."""

from __future__ import annotations

import numpy as np

from hoi_r1.answer import ParsedAnswer
from hoi_r1.image_dataset import load_image
from hoi_r1.sample import HOISample
from hoi_r1.visualize import draw_pairs
from hoi_r1.vocab import HOIVocabulary


def log_examples(module, stage: str, batch: dict, parsed: list[ParsedAnswer], limit: int, texts: list[str] | None = None) -> None:
    """Log up to ``limit`` images with ground truth and predictions drawn, and the parsed answers
    as text, to every TensorBoard logger of the trainer."""
    experiments = [lg.experiment for lg in module.loggers if hasattr(lg.experiment, "add_image")]
    if not experiments:
        return
    vocab = module.datamodule.vocab
    for i, (sample, answer) in enumerate(zip(batch["samples"][:limit], parsed[:limit])):
        image = draw_pairs(load_image(sample.image_path), answer.triplets, vocab, ground_truth=sample)
        array = np.asarray(image).transpose(2, 0, 1)
        summary = _summary(answer, vocab) if texts is None else texts[i]
        for exp in experiments:
            exp.add_image(f"{stage}/example_{i}", array, global_step=module.global_step)
            exp.add_text(f"{stage}/completion_{i}", f"`{sample.file_name}`\n\n    {summary}", global_step=module.global_step)


def predictions_record(sample: HOISample, parsed: ParsedAnswer, completion: str, vocab: HOIVocabulary) -> dict:
    """One image's predictions in the ``hoi-r1 eval`` predictions layout (original pixels),
    with the raw completion kept for inspection."""
    return {
        "file_name": sample.file_name,
        "width": sample.width,
        "height": sample.height,
        "hois": [
            {
                "human_box": [round(float(x), 2) for x in t.human_box],
                "object_box": [round(float(x), 2) for x in t.object_box],
                "object": vocab.objects[t.object_id],
                "verb": vocab.verbs[v],
                "score": round(float(t.score), 6),
            }
            for t in parsed.triplets
            for v in t.verb_ids
        ],
        "completion": completion,
    }


def _summary(parsed: ParsedAnswer, vocab: HOIVocabulary) -> str:
    parts = [
        f"{','.join(vocab.verbs[v] for v in t.verb_ids)} {vocab.objects[t.object_id]} "
        f"h={[round(float(x)) for x in t.human_box]} o={[round(float(x)) for x in t.object_box]}"
        for t in parsed.triplets
    ]
    head = f"format_ok={parsed.structure_ok} json_ok={parsed.json_ok} pairs={len(parsed.triplets)}"
    return head + ("\n    " + "\n    ".join(parts) if parts else "")
