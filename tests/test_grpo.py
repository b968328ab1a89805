"""GRPOModule with the real Trainer: training moves the policy, logs rewards, keeps the reference
frozen, checks its settings, starts from earlier checkpoints, and reports rewards in validation."""

from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.checkpoints import perturbed_checkpoint
from helpers.grpo import ToyRewardGRPO, grpo_data, grpo_module, grpo_trainer

from hoi_r1.grpo import GRPOModule
from hoi_r1.advantages import group_advantages
from hoi_r1.grpo_settings import RolloutSettings
from hoi_r1.models import LoraSettings, ModelSettings, load_model

ROOT = Path(__file__).resolve().parents[1]


def _changed(before: dict, module) -> set[str]:
    after = module.model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_fit_trains_the_policy_and_logs_rewards(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir)
    module.configure_model()
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    trainer = grpo_trainer(tmp_path, limit_val_batches=1, val_check_interval=4)
    trainer.fit(module, datamodule=grpo_data(synthetic_world))
    assert trainer.global_step == 2
    changed = _changed(before, module)
    assert any(k.startswith("model.language_model") for k in changed)
    assert not any("visual.blocks" in k or "visual.patch_embed" in k for k in changed)
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"])
    for key in ("train/reward", "train/reward_std", "train/reward/format", "train/reward/iou_std",
                "train/reward/distinct_chars", "train/advantage/std", "train/clip_ratio/region",
                "train/completion_length/mean", "train/truncation_rate", "train/rollout_tokens_per_s",
                "train/time/generate_s", "train/time/score_s", "train/time/train_s", "val/mAP_full",
                "val/reward/format", "val/reward/label", "val/reward"):
        assert key in m, key
    assert float(m["train/advantage/std"]) > 0  # the groups had a spread: the gradient was not zero
    assert 0 <= float(m["train/truncation_rate"]) <= 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").glob("version_*"))))
    events.Reload()
    assert "train/completions/text_summary" in events.Tags()["tensors"]
    results = trainer.test(module, datamodule=grpo_data(synthetic_world))
    assert {"test/mAP_full", "test/reward/format", "test/reward/iou"} <= set(results[0])


def test_lora_reference_is_the_model_without_adapters(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir, lora=LoraSettings(r=4, alpha=8), beta=0.5, share_prompts=False)
    module.configure_model()
    assert module.reference is None  # no second copy
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    trainer = grpo_trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=grpo_data(synthetic_world))
    changed = _changed(before, module)
    assert changed and all("lora_" in k for k in changed)
    kl = trainer.callback_metrics["train/kl"]
    assert torch.isfinite(kl) and float(kl) > 0  # the second step's policy has moved from the reference


def test_full_fine_tuning_keeps_a_frozen_reference_in_checkpoints(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir, beta=0.1)
    module.configure_model()
    assert module.reference is not None
    assert not any(p.requires_grad for p in module.reference.parameters())
    initial = {k: v.clone() for k, v in module.reference.state_dict().items()}
    trainer = grpo_trainer(tmp_path)
    trainer.fit(module, datamodule=grpo_data(synthetic_world))
    for k, v in module.reference.state_dict().items():
        assert torch.equal(v, initial[k]), k
    trainer.save_checkpoint(tmp_path / "g.ckpt")
    checkpoint = torch.load(tmp_path / "g.ckpt", weights_only=True)
    assert any(k.startswith("reference.") for k in checkpoint["state_dict"])
    assert {"buffer", "rollout_rng"} <= set(checkpoint["grpo"])
    assert {"torch", "python", "numpy"} <= set(checkpoint["rng_states"])
    # evaluating that checkpoint with β = 0 (no reference built) loads the policy and leaves the copy out
    plain = grpo_module(tiny_model_dir, beta=0.0)
    results = grpo_trainer(tmp_path).test(plain, datamodule=grpo_data(synthetic_world), ckpt_path=str(tmp_path / "g.ckpt"))
    assert "test/mAP_full" in results[0]
    trained = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    assert all(torch.equal(v, trained[k]) for k, v in plain.model.state_dict().items())


@pytest.mark.parametrize(
    ("spg", "accumulate", "batch_size", "message"),
    [(3, 2, 2, "multiple of trainer.accumulate_grad_batches=2"), (8, 1, 2, "cannot be cut into")],
)
def test_inconsistent_micro_batching_is_a_clear_error(tiny_model_dir, synthetic_world, tmp_path, spg, accumulate,
                                                     batch_size, message):
    module = grpo_module(tiny_model_dir, cls=GRPOModule, spg=spg)
    trainer = grpo_trainer(tmp_path, accumulate_grad_batches=accumulate, max_steps=1)
    with pytest.raises(ValueError, match=message):
        trainer.fit(module, datamodule=grpo_data(synthetic_world, batch_size=batch_size))


def test_group_of_one_is_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        GRPOModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), rollout=RolloutSettings(num_generations=1))


def test_init_from_checkpoint_full_and_merged_lora(tiny_model_dir, tmp_path):
    full = perturbed_checkpoint(tiny_model_dir, tmp_path / "full.ckpt")
    module = GRPOModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), init_from_checkpoint=str(tmp_path / "full.ckpt"))
    module.configure_model()
    for k, v in full.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v), k

    lora = LoraSettings(r=4, alpha=8)
    sft = perturbed_checkpoint(tiny_model_dir, tmp_path / "lora.ckpt", lora=lora)
    merged = sft.merge_and_unload().state_dict()
    grpo = GRPOModule(model=ModelSettings(name_or_path=str(tiny_model_dir), lora=LoraSettings(r=2, alpha=4)),
                      init_from_checkpoint=str(tmp_path / "lora.ckpt"))
    grpo.configure_model()
    with grpo.model.disable_adapter():  # the GRPO reference is the merged SFT model
        base = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v
                for k, v in grpo.model.state_dict().items() if "lora_" not in k}
    for k, v in merged.items():
        assert torch.allclose(base[k], v, atol=1e-6), k
    with pytest.raises(FileNotFoundError, match="init_from_checkpoint"):
        GRPOModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), init_from_checkpoint=str(tmp_path / "no.ckpt")).configure_model()


def test_help_documents_the_grpo_arguments(capsys):
    from hoi_r1.lightning_cli import cli_main

    with pytest.raises(SystemExit):
        cli_main(["fit", "--model.help", "hoi_r1.grpo.GRPOModule"])
    text = capsys.readouterr().out
    for option in ("--model.rollout.num_generations", "--model.loss.loss_type", "--model.loss.steps_per_generation",
                   "--model.engine", "--model.vllm.enable_sleep_mode", "--model.init_from_checkpoint",
                   "--model.rewards.iou", "--model.share_prompts"):
        assert option in text, option
    assert "completions per prompt" in text  # RolloutSettings.num_generations's documentation


def test_grpo_starts_from_a_lora_sft_checkpoint_written_by_the_cli(tiny_model_dir, synthetic_world, tmp_path, monkeypatch):
    """LightningCLI stores the model settings as plain values: the LoRA settings are read from them,
    and the starting policy is the SFT's merged model (no adapters left, the trained deltas in)."""
    import yaml

    from hoi_r1.hoi_module import load_initial_weights
    from hoi_r1.lightning_cli import cli_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cb.yaml").write_text(yaml.safe_dump({"trainer": {"logger": False, "callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(tmp_path / "ck"), "save_last": True}}]}}))
    cli_main(["fit", "--config", str(ROOT / "configs" / "demo_sft.yaml"), "--config", str(tmp_path / "cb.yaml"),
              "--model.init_args.model.name_or_path", str(tiny_model_dir), "--model.init_args.model.lora", '{"r": 4, "alpha": 8}',
              "--model.init_args.log_examples", "0", "--model.init_args.optimizer.init_args.lr", "0.05",
              "--data.train.annotations", str(synthetic_world / "train.json"), "--data.val.annotations", str(synthetic_world / "test.json"),
              "--data.test.annotations", str(synthetic_world / "test.json"), "--data.batch_size", "2",
              "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
              "--model.init_args.scheduler.init_args.total_steps", "1"])
    ckpt = tmp_path / "ck" / "last.ckpt"
    assert isinstance(torch.load(ckpt, weights_only=True, mmap=True)["hyper_parameters"]["model"], dict)
    model = load_initial_weights(ModelSettings(name_or_path=str(tiny_model_dir)), ckpt)
    names = [n for n, _ in model.named_parameters()]
    assert names and not any("lora_" in n for n in names)
    base = load_model(ModelSettings(name_or_path=str(tiny_model_dir)))
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert moved and all("language_model" in n or "model.layers" in n for n in moved)  # the adapters' deltas, merged


class _RecordingGRPO(ToyRewardGRPO):
    """Records what each generation batch scored (samples, then the greedy answers) and its buffer."""

    def score(self, completions, targets):
        out = super().score(completions, targets)
        self.__dict__.setdefault("scored", []).append((completions.token_ids.clone(), torch.tensor(out.total)))
        return out

    def _rollout(self, batch):
        buffer = super()._rollout(batch)
        self.__dict__.setdefault("buffers", []).append(buffer.advantages.clone())
        return buffer


@pytest.mark.parametrize("scale", ["group", "none"])
def test_greedy_baseline_and_positive_only_set_the_advantages(tiny_model_dir, synthetic_world, tmp_path, scale):
    runs = {}
    for name, baseline, positive_only in (("group", "group", False), ("greedy", "greedy", False),
                                          ("positive", "group", True)):
        L.seed_everything(0)
        module = grpo_module(tiny_model_dir, cls=_RecordingGRPO)
        module.loss_settings.baseline, module.loss_settings.scale_rewards = baseline, scale
        module.loss_settings.positive_only = positive_only
        trainer = grpo_trainer(tmp_path / name, max_steps=1)
        trainer.fit(module, datamodule=grpo_data(synthetic_world))
        runs[name] = (module, trainer.callback_metrics)
    plain, greedy, positive = runs["group"][0], runs["greedy"][0], runs["positive"][0]
    (sampled, totals), (greedy_ids, greedy_totals) = greedy.scored
    assert len(plain.scored) == 1 and greedy_ids.shape[0] == 2  # one greedy answer per prompt (batch of 2)
    assert torch.equal(plain.scored[0][0], sampled)  # decoding the greedy answers drew no random numbers
    expected, _ = group_advantages(totals.float(), 2, scale, baseline=greedy_totals.float())
    assert torch.allclose(greedy.buffers[0], expected)
    assert not torch.allclose(expected, group_advantages(totals.float(), 2, scale)[0])  # a different signal
    # loss.positive_only: the same samples, the group-mean advantages without their negative half
    plain_advantages = group_advantages(totals.float(), 2, scale)[0]
    assert torch.equal(positive.scored[0][0], sampled) and (plain_advantages < 0).any()
    assert torch.allclose(positive.buffers[0], plain_advantages.clamp(min=0))
    metrics = runs["greedy"][1]
    assert float(metrics["train/reward_greedy"]) == pytest.approx(float(greedy_totals.mean()), rel=1e-5)
    assert 0 <= float(metrics["train/frac_above_greedy"]) + float(metrics["train/frac_below_greedy"]) <= 1
    assert "train/reward_greedy" not in runs["group"][1]
