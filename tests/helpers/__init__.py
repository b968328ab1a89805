"""Shared helpers of the tests (no tests here: pytest collects only ``test_*.py``).

``tests`` is on ``sys.path`` in-process (pytest's default ``prepend`` import mode puts it there
when it imports ``conftest.py`` and the test files: ``tests`` has no ``__init__.py``) and on the
``PYTHONPATH`` of the subprocess tests, so both import these as ``helpers.<module>`` and
subprocess configurations name their classes ``helpers.<module>.<Class>``:

- :mod:`helpers.runs`: Lightning callbacks and plugins the ``hoi-r1`` subprocesses load by class
  path, and the launching of GRPO ``fit`` subprocesses;
- :mod:`helpers.grpo`: GRPO modules with a reward a random tiny model can earn, and the small
  module / trainer / data builders of the in-process GRPO tests;
- :mod:`helpers.answers`: the reward tests' two-pair ground truth and the answers written about it;
- :mod:`helpers.metric_cases`: hand-worked HOI-mAP cases with known AP;
- :mod:`helpers.metric_data`: random HOI-mAP data for the reference parity tests;
- :mod:`helpers.metric_reference`: the per-detection loop references of every protocol, built on
  :mod:`helpers.qpic_reference`, :mod:`helpers.hoi_r1_reference`, :mod:`helpers.pocket_reference`
  and :mod:`helpers.thid_reference` (each evaluator's own control flow);
- :mod:`helpers.rollout`: generation batches of images of different sizes;
- :mod:`helpers.tool_world`: the tool-mode world (detections, cold-start traces) and a scripted
  cold-start teacher;
- :mod:`helpers.fsdp1`: the worker of the 2-process FSDP1 runs outside Lightning;
- :mod:`helpers.vllm_ranks`: the script each rank of the 2-rank vLLM test runs.
"""
