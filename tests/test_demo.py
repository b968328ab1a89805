"""The demo's plumbing: a reused world folder must be the world the demo asks for."""

import json

from hoi_r1.synthetic.demo import _world_matches
from hoi_r1.synthetic.world import main as synth


def test_a_world_is_reused_only_with_the_same_knobs(tmp_path):
    out = tmp_path / "world"
    args = ["--out", str(out), "--num-train", "3", "--num-test", "2", "--grid", "14", "--backgrounds", "ramp"]
    assert not _world_matches(out, args)  # nothing there yet
    synth(args)
    assert _world_matches(out, args)
    assert json.loads((out / "world.json").read_text())["backgrounds"] == ["ramp"]
    assert not _world_matches(out, [*args[:-1], "flat"])  # another background
    assert not _world_matches(out, [*args, "--seed", "1"])  # another seed
    (out / "world.json").unlink()  # a world written before world.json existed: made again
    assert not _world_matches(out, args)


def test_the_demo_runs_base_sft_grpo_and_writes_one_table(tmp_path, monkeypatch, capsys):
    """`make demo`'s driver end to end on a tiny world and a few steps: every stage through the CLI,
    one table with a column per stage, metrics.json with the three stages, both TensorBoard runs."""
    from pathlib import Path

    from hoi_r1.synthetic import demo

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "configs").symlink_to(root / "configs")
    (tmp_path / "checkpoints" / demo.BASE.name).symlink_to(root / demo.BASE)
    monkeypatch.chdir(tmp_path)
    quick = "--data.eval_batch_size 4 --model.init_args.generation.max_new_tokens 24"
    demo.main([
        "--sft", f"--trainer.max_steps 2 --trainer.val_check_interval 2 --data.batch_size 2 {quick}",
        "--grpo", f"--trainer.max_steps 1 --trainer.accumulate_grad_batches 1 --data.batch_size 2 {quick} "
                  "--model.init_args.loss.steps_per_generation 1 --model.init_args.rollout.num_generations 2 "
                  "--model.init_args.rollout.max_completion_length 16",
        "--world", "--num-train", "8", "--num-val", "4", "--num-test", "4", "--grid", "14", "--backgrounds", "ramp",
    ])
    results = json.loads((tmp_path / "runs/demo/metrics.json").read_text())
    assert list(results) == ["base", "sft", "grpo"]
    for stage in results.values():
        assert {"mAP_full", "mAP_full_rank", "mAP_non_rare", "mean_max_recall", "parse_rate", "format_rate",
                "pairs_per_image", "reward"} <= set(stage)
    table = capsys.readouterr().out.split("held-out synthetic scenes")[-1]
    assert table.split("\n")[0].split() == ["base", "sft", "grpo"]
    assert (tmp_path / "checkpoints/demo_grpo/last.ckpt").exists()
    assert list((tmp_path / "runs/demo_sft").glob("version_*/events.*"))
    assert list((tmp_path / "runs/demo_grpo").glob("version_*/events.*"))
    assert (tmp_path / "runs/demo/predictions.png").exists()
