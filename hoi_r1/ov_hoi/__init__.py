"""The tool-using mode of OV-HOI / ImagineAgent (arXiv 2602.11499; docs/ov_hoi.md): the model
calls tools inside its reasoning (detection, spatial relations, crop / imagine) before it answers.

The pure parts (they import neither Lightning nor transformers):

* :mod:`hoi_r1.ov_hoi.protocol` — reading ``<tool_call>`` s, the tool registry, running a call,
  formatting ``<tool_response>`` s;
* :mod:`hoi_r1.ov_hoi.builtin` — the tools (``detect_humans``, ``detect_objects``,
  ``relations``, ``spatial_relations``, ``crop``, ``imagine``);
* :mod:`hoi_r1.ov_hoi.detection`, :mod:`hoi_r1.ov_hoi.spatial`, :mod:`hoi_r1.ov_hoi.image_ops` —
  what the tools compute (detections files and backends, geometry, crops);
* :mod:`hoi_r1.ov_hoi.episode` — an episode as data (turns, calls, transcript) and reading a
  transcript back; :mod:`hoi_r1.ov_hoi.episode_driver` — the multi-turn driver;
* :mod:`hoi_r1.ov_hoi.episode_stats` — tool statistics of episodes;
* :mod:`hoi_r1.ov_hoi.rewards` — ``accuracy``, ``format``, ``tool_usage``, ``spatial``;
* :mod:`hoi_r1.ov_hoi.prompts` — the system prompt and the open-vocabulary query;
* :mod:`hoi_r1.ov_hoi.cold_start` — SFT traces from ground truth (``hoi-r1 cold-start``), and
  :mod:`hoi_r1.ov_hoi.cold_start_records` — reading their file.

With the model:

* :mod:`hoi_r1.ov_hoi.episode_rollout` — the policy writing turns in padded batches, the training
  sequences and their log-probs;
* :mod:`hoi_r1.ov_hoi.evaluation` — validation / test / predict of episodes;
* :mod:`hoi_r1.ov_hoi.sft` (:class:`~hoi_r1.ov_hoi.sft.ToolSFTModule`) and
  :mod:`hoi_r1.ov_hoi.tool_grpo` (:class:`~hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule`) — the two
  training stages;
* :mod:`hoi_r1.ov_hoi.collate` — the batches of ``data.task: tools`` (cold-start
  conversations, the opening messages of episodes).

The dependency goes one way: this package imports the core modules. Of those, only two import
it, and only its data side: :mod:`hoi_r1.tasks`, which maps ``data.task: tools`` to its
collators, and :mod:`hoi_r1.datamodule`, which reads cold-start traces and detections files.
Generation, the rollout engines and the LightningModules never import its models
(``tests/test_import_graph.py``); the tool mode's modules override hooks of the direct mode's.
"""
