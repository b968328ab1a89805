"""SFTModule end to end with the real Trainer: loss, parameter updates, freezing, checkpoints, metrics."""

import lightning as L
import pytest
import torch
from helpers.checkpoints import perturbed_checkpoint

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.hoi_evaluation import EvaluationSettings
from hoi_r1.generation import GenerationSettings
from hoi_r1.models import ModelSettings
from hoi_r1.prompts import PromptConfig
from hoi_r1.sft import SFTModule

SHORT_PROMPT = PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False)


def _data(model_dir, world, **kwargs):
    return HOIDataModule(
        train=SplitFiles(str(world / "train.json")),
        val=SplitFiles(str(world / "test.json"), limit=4),
        test=SplitFiles(str(world / "test.json"), limit=4),
        batch_size=4,
        eval_batch_size=4,
        prompt=SHORT_PROMPT,
        **kwargs,
    )


def _module(model_dir, **settings):
    return SFTModule(
        model=ModelSettings(name_or_path=str(model_dir), **settings),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        generation=GenerationSettings(max_new_tokens=12),
        evaluation=EvaluationSettings(),
        log_examples=1,
    )


def _trainer(tmp_path, **kwargs):
    return L.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"),
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **kwargs,
    )


def test_fit_updates_trainable_and_keeps_frozen(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = _module(tiny_model_dir, freeze_vision=True)
    data = _data(tiny_model_dir, synthetic_world)
    module.configure_model()
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=1, val_check_interval=3, log_every_n_steps=1)
    trainer.fit(module, datamodule=data)
    after = module.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.language_model") for k in changed)
    assert any("visual.merger" in k for k in changed)
    assert not any("visual.blocks" in k or "visual.patch_embed" in k for k in changed)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    for key in ("val/mAP_full", "val/parse_rate", "val/pairs_per_image", "val/truncation_rate"):
        assert key in metrics
    assert 0.0 <= float(metrics["val/parse_rate"]) <= 1.0


def test_checkpoint_reloads_into_equal_weights(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = _module(tiny_model_dir)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=_data(tiny_model_dir, synthetic_world))
    path = tmp_path / "sft.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert "rng_states" in checkpoint and "HOIDataModule" in checkpoint
    assert checkpoint["HOIDataModule"]["train_sampler"]["position"] == 8  # 2 batches of 4 consumed
    reloaded = _module(tiny_model_dir)
    reloaded.configure_model()
    reloaded.load_state_dict(checkpoint["state_dict"])
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, reloaded.model.state_dict()[k]), k


def test_resume_from_a_mid_epoch_checkpoint_is_exact(tiny_model_dir, synthetic_world, tmp_path):
    """A run resumed from its step-2 checkpoint ends with the same weights as the run itself."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root, ckpt_path=None):
        L.seed_everything(0)
        module = _module(tiny_model_dir)
        saver = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2, save_top_k=-1)
        trainer = _trainer(root, max_steps=4, limit_val_batches=0, callbacks=[saver])
        trainer.fit(module, datamodule=_data(tiny_model_dir, synthetic_world), ckpt_path=ckpt_path)
        return module, trainer

    straight, _ = run(tmp_path / "a")
    (step2,) = (tmp_path / "a" / "ckpt").glob("*step=2.ckpt")
    assert torch.load(step2, weights_only=True)["HOIDataModule"]["train_sampler"]["position"] == 8
    resumed, trainer = run(tmp_path / "b", ckpt_path=str(step2))
    assert trainer.global_step == 4
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_test_stage_reports_metric_and_logs_examples(tiny_model_dir, synthetic_world, tmp_path):
    module = _module(tiny_model_dir)
    trainer = _trainer(tmp_path)
    results = trainer.test(module, datamodule=_data(tiny_model_dir, synthetic_world))
    assert {"test/mAP_full", "test/mAP_rare", "test/parse_rate"} <= set(results[0])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").glob("version_*"))))
    events.Reload()
    assert "test/example_0" in events.Tags()["images"]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_export_loads_with_from_pretrained(tiny_model_dir, synthetic_world, tmp_path, lora):
    from transformers import AutoModelForImageTextToText

    from hoi_r1.export import export_checkpoint
    from hoi_r1.models import LoraSettings

    L.seed_everything(0)
    module = _module(tiny_model_dir, lora=LoraSettings(r=4, alpha=8) if lora else None)
    data = _data(tiny_model_dir, synthetic_world)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    out = export_checkpoint(tmp_path / "m.ckpt", tmp_path / "hf")
    exported = AutoModelForImageTextToText.from_pretrained(out)
    batch = next(iter(data.train_dataloader()))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    module.model.eval()
    with torch.no_grad():
        expected = module.model(**inputs).logits
        got = exported(**inputs).logits
    assert torch.allclose(expected, got, atol=1e-5)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()


def test_export_writes_the_runs_pixel_limits_into_the_processor(tiny_model_dir, synthetic_world, tmp_path):
    """The exported processor resizes images as the run's data module did (``data.min_pixels`` /
    ``data.max_pixels`` from the checkpoint), unless ``--min-pixels`` / ``--max-pixels`` say
    otherwise; a processor with other limits would read every box in another frame."""
    from transformers import AutoProcessor

    from hoi_r1.export import main as export_main
    from hoi_r1.models import load_processor, pixel_limits

    base_lo, base_hi, _ = pixel_limits(load_processor(str(tiny_model_dir)).image_processor)
    lo, hi = 28 * 28 * 2, 28 * 28 * 12
    assert (lo, hi) != (base_lo, base_hi)
    module = _module(tiny_model_dir)
    data = _data(tiny_model_dir, synthetic_world, min_pixels=lo, max_pixels=hi)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    assert export_main(["--checkpoint", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "hf")]) == 0
    assert pixel_limits(AutoProcessor.from_pretrained(tmp_path / "hf").image_processor)[:2] == (lo, hi)
    assert export_main(["--checkpoint", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "hf2"),
                        "--max-pixels", str(28 * 28 * 16)]) == 0
    assert pixel_limits(AutoProcessor.from_pretrained(tmp_path / "hf2").image_processor)[:2] == (lo, 28 * 28 * 16)


def test_model_settings_of_earlier_checkpoints_drop_the_pixel_fields():
    from hoi_r1.models import model_settings_from

    assert model_settings_from({"name_or_path": "m", "min_pixels": None, "max_pixels": None}) == ModelSettings(name_or_path="m")
    with pytest.warns(UserWarning, match="data.max_pixels"):
        assert model_settings_from({"name_or_path": "m", "max_pixels": 1024}) == ModelSettings(name_or_path="m")


def test_answer_loss_equals_the_full_logits_loss(tiny_model_dir, synthetic_world):
    from hoi_r1.generation import model_inputs
    from hoi_r1.models import load_model
    from hoi_r1.sft import answer_loss

    data = _data(tiny_model_dir, synthetic_world)
    data.default_processor(str(tiny_model_dir))
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir)))
    full = model(**model_inputs(batch), labels=batch["labels"]).loss
    assert torch.allclose(answer_loss(model, batch), full, rtol=1e-5, atol=1e-6)


def test_sft_continues_from_a_checkpoints_weights(tiny_model_dir, tmp_path):
    """``init_from_checkpoint``: SFT further from an SFT checkpoint with a new schedule (its
    weights replace the base's before training); a missing file is a clear error."""
    model = perturbed_checkpoint(tiny_model_dir, tmp_path / "sft.ckpt")
    module = SFTModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), init_from_checkpoint=str(tmp_path / "sft.ckpt"))
    module.configure_model()
    for k, v in model.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v), k
    assert module.hparams["init_from_checkpoint"] == str(tmp_path / "sft.ckpt")
    with pytest.raises(FileNotFoundError, match="init_from_checkpoint"):
        SFTModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), init_from_checkpoint=str(tmp_path / "no.ckpt")).configure_model()
