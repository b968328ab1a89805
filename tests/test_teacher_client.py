"""The teacher client of ``hoi-r1 distill`` (:mod:`hoi_r1.teacher_client`, the openai SDK) against
a fake chat-completions server on 127.0.0.1: retries, giving up, the SDK's backoff, the
missing-SDK message."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from helpers.teacher_server import FAST, ok_reply, pixel_digest, png_data_url, teacher_factory  # noqa: F401 (fixture)
from hoi_r1.distill import extract_reasoning
from hoi_r1.teacher_client import INSTALL_HINT, TeacherClient, TeacherConfig, TeacherError


def client_for(server, **kwargs):
    settings = dict(base_url=server.url, model="m", requests_per_minute=0, max_retries=2, timeout_s=5)
    return TeacherClient(TeacherConfig(**{**settings, **kwargs}))




def test_retries_on_500_then_429_with_retry_after(teacher_factory):
    statuses = [(500, {"retry-after-ms": "20"}, "overloaded"), (429, {"Retry-After": "1"}, {"error": "slow down"})]
    server = teacher_factory(lambda n, body: statuses[n] if n < len(statuses) else ok_reply(body))
    client = client_for(server)
    image = Image.new("RGB", (8, 6), (10, 20, 30))
    reply = client.chat(png_data_url(image), "why?")
    assert extract_reasoning(reply["choices"][0]["message"]["content"]).endswith(f"{pixel_digest(image)}.")
    assert len(server.requests) == 3
    # each wait is the one the server named, not the SDK's own backoff (at least 0.375 s first)
    first, second = (b["time"] - a["time"] for a, b in zip(server.requests, server.requests[1:]))
    assert first < 0.3
    assert 0.95 <= second < 3.0


def test_gives_up_after_max_retries(teacher_factory):
    server = teacher_factory(lambda n, body: (503, FAST, "down for maintenance"))
    client = client_for(server, max_retries=4)
    with pytest.raises(TeacherError, match="for image a.png: 5 attempts failed, the last with HTTP 503.*down for "
                                           "maintenance"):
        client.chat("data:image/png;base64,AAAA", "x", image="a.png")
    assert len(server.requests) == 5


def test_backoff_without_retry_after_is_the_sdks(teacher_factory):
    server = teacher_factory(lambda n, body: (502, {}, "gone") if n == 0 else ok_reply(body))
    client = client_for(server, max_retries=1)
    client.chat(png_data_url(Image.new("RGB", (4, 4))), "x")
    assert len(server.requests) == 2
    assert 0.35 <= server.requests[1]["time"] - server.requests[0]["time"] < 3.0


def test_distill_imports_without_openai_and_the_client_says_how_to_install():
    code = ("import sys; sys.modules['openai'] = None\n"
            "import hoi_r1.distill\n"
            "from hoi_r1.teacher_client import TeacherClient, TeacherConfig\n"
            "try:\n    TeacherClient(TeacherConfig())\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert INSTALL_HINT in result.stdout and "pip install 'hoi-r1[distill]'" in result.stdout
