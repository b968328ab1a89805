"""Run by ``tests/test_vllm_real.py`` under ``torch.distributed.run``: one vllm engine per rank
(``external_launcher``), each greedy on the same prompts; rank r writes ``<out>/rank<r>.json``
(the process group's backend and size, and the greedy tokens)."""

import json
import os
import sys
from pathlib import Path


def main(world: str, out: str) -> None:
    import torch.distributed as dist

    from hoi_r1.datamodule import HOIDataModule, SplitFiles
    from hoi_r1.prompts import PromptConfig
    from hoi_r1.rollout.engine import RolloutSampling
    from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings

    model = str(Path(__file__).parents[2] / "checkpoints" / "tiny-qwen2_5_vl-grounding")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo")  # the trainer's group, as Lightning's DDP on CPU opens it
    data = HOIDataModule(processor=model, train=SplitFiles(f"{world}/train.json"), val=SplitFiles(f"{world}/test.json"),
                         batch_size=2, eval_batch_size=3,
                         prompt=PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False))
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    engine = VLLMRolloutEngine(model, data.processor, VLLMSettings(dtype="float32", enforce_eager=True, max_model_len=2048),
                               rank=rank, local_rank=rank, world_size=size)
    greedy = engine.generate(batch, 1, RolloutSampling(max_new_tokens=16, greedy=True))
    rows = [greedy.token_ids[i][greedy.mask[i].bool()].tolist() for i in range(len(greedy.texts))]
    record = {"backend": dist.get_backend(), "world_size": dist.get_world_size(), "rank": dist.get_rank(), "greedy": rows}
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
