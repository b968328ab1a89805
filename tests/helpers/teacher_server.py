"""A fake OpenAI-style chat-completions server on 127.0.0.1 for the teacher client and
``hoi-r1 distill`` tests (loopback only), with the pixel digest its replies quote."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

# The SDK waits min(0.5 * 2^k, 8) s times a factor in [0.75, 1] before retry k unless the server
# names a wait (Retry-After, or retry-after-ms) of at most 60 s; the fake server names short ones.
FAST = {"retry-after-ms": "10"}


def pixel_digest(image: Image.Image) -> str:
    return hashlib.sha1(image.convert("RGB").tobytes()).hexdigest()[:12]


def ok_reply(body: dict) -> tuple[int, dict, dict]:
    """A teacher that reads the image and wraps its reasoning in the student's tags."""
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    text = f"<think>I count the people in picture {pixel_digest(image)}.</think><answer>[]</answer>"
    return 200, {}, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


class FakeTeacher:
    """An OpenAI-style server: ``script(n, body)`` answers request ``n`` (0-based) of
    ``/chat/completions`` with ``(status, headers, json or text)``; every request is recorded."""

    def __init__(self, script=None, models=("teacher-1",)):
        self.script = script or (lambda n, body: ok_reply(body))
        self.models = models
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._send(self, 200, {}, {"object": "list", "data": [{"id": m} for m in fake.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = len(fake.requests)
                    fake.requests.append({"path": self.path, "headers": {k.title(): v for k, v in self.headers.items()}, "body": body,
                                          "time": time.monotonic()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    reply = fake.script(n, body)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                fake._send(self, *reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @staticmethod
    def _send(handler, status, headers, payload):
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        handler.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def teacher_factory():
    servers = []

    def make(script=None, **kwargs):
        servers.append(FakeTeacher(script, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def png_data_url(image: Image.Image) -> str:
    """``image`` as the PNG data URL a chat request carries."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
