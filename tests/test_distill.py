"""``hoi-r1 distill`` against a fake chat-completions server on 127.0.0.1 (loopback only;
``tests/helpers/teacher_server.py``; the client alone: ``tests/test_teacher_client.py``)."""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import pytest
from PIL import Image

from helpers.teacher_server import FAST, ok_reply, pixel_digest, teacher_factory  # noqa: F401 (fixture)
from hoi_r1.answer_render import render_answer
from hoi_r1.distill import answer_json, completed_file_names, extract_reasoning, main
from hoi_r1.frames import Frame
from hoi_r1.image_dataset import load_image, read_reasonings
from hoi_r1.readers import read_annotations
from hoi_r1.synthetic.scene import SyntheticWorldConfig
from hoi_r1.synthetic.world import generate_world

NUM_TRAIN = 6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = generate_world(tmp_path_factory.mktemp("distill_world"),
                          SyntheticWorldConfig(num_train=NUM_TRAIN, num_test=1, seed=5))
    dataset = read_annotations(root / "train.json")
    digests = {pixel_digest(load_image(s.image_path)): s for s in dataset.samples}
    assert len(digests) == NUM_TRAIN
    return root, dataset, digests


def run_main(world, url, out, *extra):
    root = world[0]
    return main(["--annotations", str(root / "train.json"), "--out", str(out), "--base-url", url,
                 "--requests-per-minute", "0", "--max-retries", "2",
                 "--timeout", "5", *extra])


def request_image_digest(request: dict) -> str:
    url = request["body"]["messages"][0]["content"][0]["image_url"]["url"]
    return pixel_digest(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_every_image_gets_its_reasoning(world, teacher_factory, tmp_path, monkeypatch):
    _, dataset, digests = world
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = teacher_factory()
    out = tmp_path / "reasoning.jsonl"
    assert run_main(world, server.url, out, "--model", "teacher-1", "--max-tokens", "321",
                    "--temperature", "0.25") == 0
    assert len(server.requests) == NUM_TRAIN
    for request in server.requests:
        body = request["body"]
        assert request["path"] == "/v1/chat/completions"
        assert "Authorization" not in request["headers"]
        assert (body["model"], body["max_tokens"], body["temperature"]) == ("teacher-1", 321, 0.25)
        image_part, text_part = body["messages"][0]["content"]
        assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
        sample = digests[request_image_digest(request)]
        frame = Frame.for_image("absolute_original", sample.width, sample.height)
        answer = answer_json(sample, dataset.vocab, frame)
        assert answer.startswith("[") and answer in text_part["text"]
        assert "given" in text_part["text"]  # the instruction forbids saying the answer was given
    reasonings = read_reasonings(out)
    assert set(reasonings) == {s.file_name for s in dataset.samples}
    for digest, sample in digests.items():
        assert reasonings[sample.file_name] == f"I count the people in picture {digest}."
    sample = dataset.samples[0]  # the SFT target accepts it (no tags left in the reasoning)
    frame = Frame.for_image("absolute_resized", sample.width, sample.height)
    target = render_answer(sample, dataset.vocab, frame, reasoning=reasonings[sample.file_name])
    assert target.startswith(f"<think>{reasonings[sample.file_name]}</think><answer>[")


def test_a_teacher_on_this_machine_bypasses_the_environments_proxy(world, teacher_factory, tmp_path, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://10.255.255.1:9")  # a proxy that answers nothing
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = teacher_factory()
    assert run_main(world, server.url, tmp_path / "r.jsonl", "--limit", "1", "--max-retries", "0", "--timeout", "3") == 0
    assert len(server.requests) == 1


def test_frame_flag_and_model_from_listing(world, teacher_factory, tmp_path):
    _, dataset, digests = world
    server = teacher_factory(models=("listed-model", "other"))
    assert run_main(world, server.url, tmp_path / "r.jsonl", "--limit", "2", "--frame", "normalized_1000",
                    "--max-tokens-field", "max_completion_tokens", "--max-tokens", "77") == 0
    assert len(server.requests) == 2
    for request in server.requests:
        assert request["body"]["model"] == "listed-model"
        assert request["body"]["max_completion_tokens"] == 77 and "max_tokens" not in request["body"]
        sample = digests[request_image_digest(request)]
        frame = Frame.for_image("normalized_1000", sample.width, sample.height)
        assert answer_json(sample, dataset.vocab, frame) in request["body"]["messages"][0]["content"][1]["text"]
    assert set(read_reasonings(tmp_path / "r.jsonl")) == {s.file_name for s in dataset.samples[:2]}


def test_api_key_is_sent_and_never_printed(world, teacher_factory, tmp_path, monkeypatch, capsys):
    secret = "sk-test-very-secret-7731"
    monkeypatch.setenv("HOI_TEACHER_KEY", secret)
    server = teacher_factory(lambda n, body: ok_reply(body) if n == 0 else (401, {}, {"error": "bad key"}))
    assert run_main(world, server.url, tmp_path / "r.jsonl", "--model", "teacher-1",
                    "--api-key-env", "HOI_TEACHER_KEY", "--max-concurrency", "1") == 1
    assert [r["headers"]["Authorization"] for r in server.requests] == [f"Bearer {secret}"] * 2
    printed = capsys.readouterr()
    assert "HTTP 401" in printed.err and "bad key" in printed.err
    assert secret not in printed.out + printed.err


def test_other_4xx_fails_fast_with_body(world, teacher_factory, tmp_path, capsys):
    body = {"error": {"message": "image has 99999 tokens, more than the 4096 allowed"}}
    server = teacher_factory(lambda n, _: (400, {}, body))
    out = tmp_path / "r.jsonl"
    assert run_main(world, server.url, out, "--model", "teacher-1", "--max-concurrency", "1") == 1
    assert len(server.requests) == 1
    err = capsys.readouterr().err
    assert "HTTP 400" in err and "more than the 4096 allowed" in err and server.url in err
    assert f"for image {world[1].samples[0].file_name}" in err and "attempts failed" not in err
    assert completed_file_names(out) == set()


def test_resume_after_interruption(world, teacher_factory, tmp_path, capsys):
    _, dataset, digests = world
    k = 2
    broken = teacher_factory(lambda n, body: ok_reply(body) if n < k else (502, FAST, "gone"))
    out = tmp_path / "r.jsonl"
    assert run_main(world, broken.url, out, "--model", "teacher-1", "--max-retries", "1",
                    "--max-concurrency", "1") == 1
    assert len(broken.requests) == k + 2  # k answered, then one image tried twice
    assert f"holds {k} reasonings" in capsys.readouterr().err
    first = read_reasonings(out)
    assert len(first) == k
    with out.open("ab") as f:  # a line cut off by a killed process
        f.write(b'{"file_name": "images/train/synthetic_train_000005.png", "reas')

    good = teacher_factory()
    assert run_main(world, good.url, out, "--model", "teacher-1") == 0
    assert f"wrote {NUM_TRAIN - k} reasonings to {out} ({k} were already there" in capsys.readouterr().out
    asked = [digests[request_image_digest(r)].file_name for r in good.requests]
    assert len(asked) == NUM_TRAIN - k and not set(asked) & set(first)
    names = [json.loads(line)["file_name"] for line in out.read_text().splitlines()]
    assert sorted(names) == sorted(s.file_name for s in dataset.samples)  # all present, none twice
    reasonings = read_reasonings(out)
    for digest, sample in digests.items():
        assert reasonings[sample.file_name] == f"I count the people in picture {digest}."

    again = teacher_factory()
    assert run_main(world, again.url, out, "--model", "teacher-1") == 0
    assert again.requests == []


def test_completed_file_names_repairs_only_the_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"file_name": "a.png", "reasoning": "x"}\n{"file_name": "b.png", "reasoning": "y"}')
    assert completed_file_names(path) == {"a.png", "b.png"}
    assert path.read_text().endswith("}\n")
    assert read_reasonings(path) == {"a.png": "x", "b.png": "y"}
    path.write_text('{"file_name": "a.png", "reasoning": "x"}\n{"file_na\n{"file_name": "c.png", "reasoning": "z"}\n')
    with pytest.raises(ValueError, match="r.jsonl, line 2"):
        completed_file_names(path)


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("probe", [True, False])
def test_unreachable_endpoint_is_one_clear_error(world, tmp_path, capsys, probe):
    url = closed_port_url()
    extra = ["--model", "teacher-1"] + ([] if probe else ["--no-probe"])
    start = time.perf_counter()
    assert run_main(world, url, tmp_path / "r.jsonl", *extra) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert f"cannot reach the teacher endpoint {url}" in err
    assert "server is running" in err and "--base-url" in err
    assert ("1 attempt(s)" if probe else "3 attempt(s)") in err
    assert not (tmp_path / "r.jsonl").exists() or completed_file_names(tmp_path / "r.jsonl") == set()


def test_unusable_replies_are_skipped_and_retried(world, teacher_factory, tmp_path, capsys):
    def script(n, body):
        if n == 0:
            return 200, {}, {"choices": [{"message": {"content": "<answer>[]</answer>"}, "finish_reason": "stop"}]}
        if n == 1:
            return 200, {}, {"choices": [{"message": {"content": "Half a thou"}, "finish_reason": "length"}]}
        return ok_reply(body)

    server = teacher_factory(script)
    out = tmp_path / "r.jsonl"
    assert run_main(world, server.url, out, "--model", "teacher-1") == 1
    err = capsys.readouterr().err
    assert "2 images have no reasoning" in err
    assert len(read_reasonings(out)) == NUM_TRAIN - 2
    retry = teacher_factory()
    assert run_main(world, retry.url, out, "--model", "teacher-1") == 0
    assert len(retry.requests) == 2 and len(read_reasonings(out)) == NUM_TRAIN


def test_workers_and_rate_limit(world, teacher_factory, tmp_path):
    _, dataset, digests = world

    def slow(n, body):
        time.sleep(0.02)
        return ok_reply(body)

    server = teacher_factory(slow)
    out = tmp_path / "r.jsonl"
    args = ["--annotations", str(world[0] / "train.json"), "--out", str(out), "--base-url", server.url,
            "--model", "teacher-1", "--workers", "3", "--requests-per-minute", "600"]
    assert main(args) == 0
    times = sorted(r["time"] for r in server.requests)
    assert len(times) == NUM_TRAIN
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.07  # 600/min: one request per 100 ms
    reasonings = read_reasonings(out)
    for digest, sample in digests.items():
        assert reasonings[sample.file_name] == f"I count the people in picture {digest}."


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("  Plain reasoning.  ", "Plain reasoning."),
        ("<think>Inside.</think>", "Inside."),
        ("<think>notes</think>Final text.<answer>[1]</answer>", "Final text."),
        ("Reasoning first. <answer>[{\"human\": [1, 2", "Reasoning first."),
        ("<answer>[]</answer>", ""),
        (None, ""),
        ("a <think> b", "a  b"),
    ],
)
def test_extract_reasoning(content, expected):
    assert extract_reasoning(content) == expected


def test_max_concurrency_bounds_requests_in_flight_and_keeps_input_order(world, teacher_factory, tmp_path):
    _, dataset, digests = world

    def slow(n, body):
        time.sleep(0.3 if n == 0 else 0.1)  # the first image answers last
        return ok_reply(body)

    server = teacher_factory(slow)
    out = tmp_path / "r.jsonl"
    assert run_main(world, server.url, out, "--model", "teacher-1", "--max-concurrency", "3") == 0
    assert len(server.requests) == NUM_TRAIN
    assert 1 < server.max_in_flight <= 3
    names = [json.loads(line)["file_name"] for line in out.read_text().splitlines()]
    assert names == [s.file_name for s in dataset.samples]  # input order, whatever the reply order
    reasonings = read_reasonings(out)
    for digest, sample in digests.items():
        assert reasonings[sample.file_name] == f"I count the people in picture {digest}."


def test_max_concurrency_one_sends_one_at_a_time(world, teacher_factory, tmp_path):
    server = teacher_factory(lambda n, body: (time.sleep(0.05), ok_reply(body))[1])
    assert run_main(world, server.url, tmp_path / "r.jsonl", "--model", "teacher-1", "--max-concurrency", "1") == 0
    assert server.max_in_flight == 1 and len(server.requests) == NUM_TRAIN


@pytest.mark.parametrize("flag", ["--backoff-base", "--seed"])
def test_removed_flags_are_a_clear_error(world, tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        run_main(world, "http://127.0.0.1:9/v1", tmp_path / "r.jsonl", flag, "1")
    assert exit_info.value.code == 2
    assert f"{flag} was removed" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_max_concurrency_must_be_positive(world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_main(world, "http://127.0.0.1:9/v1", tmp_path / "r.jsonl", "--max-concurrency", "0")
    assert "--max-concurrency must be at least 1" in capsys.readouterr().err


def test_replies_after_a_failed_image_are_still_written(world, teacher_factory, tmp_path, capsys):
    _, dataset, digests = world
    first = dataset.samples[0]

    def script(n, body):
        if digests[request_image_digest({"body": body})] is first:
            time.sleep(0.3)  # the others answer while the first image is still in flight
            return 400, {}, {"error": "unsupported image"}
        return ok_reply(body)

    server = teacher_factory(script)
    out = tmp_path / "r.jsonl"
    assert run_main(world, server.url, out, "--model", "teacher-1", "--max-concurrency", "3") == 1
    err = capsys.readouterr().err
    assert f"for image {first.file_name}: HTTP 400" in err and "unsupported image" in err
    names = [json.loads(line)["file_name"] for line in out.read_text().splitlines()]
    assert names and first.file_name not in names
    assert names == [s.file_name for s in dataset.samples if s.file_name in names]  # still in input order
    assert len(server.requests) <= NUM_TRAIN
