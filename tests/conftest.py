"""Shared fixtures: the tiny model and a small synthetic world, built once per test session."""

from __future__ import annotations

import os

import pytest

# the shared helpers (tests/helpers, imported as ``helpers.<module>``: ``tests`` is on sys.path)
# assert too: rewrite their asserts as pytest rewrites the test modules'
pytest.register_assert_rewrite("helpers")


@pytest.fixture(autouse=True)
def _restore_environment():
    """Undo environment changes a test makes (e.g. RANK / WORLD_SIZE set for vLLM's external
    launcher), so a later test does not believe it runs in a distributed job."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved with save_pretrained (loads like a hub checkpoint)."""
    from hoi_r1.tiny import TinyModelSize, build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny"), TinyModelSize(text_hidden=64, vision_hidden=32))


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory):
    """A small synthetic HOI world in HICO-DET format (train.json / test.json / images)."""
    from hoi_r1.synthetic.scene import SyntheticWorldConfig
    from hoi_r1.synthetic.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world"), SyntheticWorldConfig(num_train=24, num_test=8, seed=1))
