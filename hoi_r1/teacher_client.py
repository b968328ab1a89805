"""An OpenAI-compatible chat-completions client with the robustness a long distillation run
needs: a start-up probe, retries with exponential backoff and seeded jitter on connection errors,
timeouts, HTTP 429 and 5xx (honouring ``Retry-After``), an immediate error that shows the body on
any other 4xx, and client-side request spacing. Standard library only (``urllib.request``).
Used by :mod:`hoi_r1.distill`.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Literal

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
RETRY_AFTER_CAP_S = 600.0
"""Longest ``Retry-After`` wait honoured, in seconds."""
BODY_CHARS_SHOWN = 2000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class TeacherError(RuntimeError):
    """The teacher endpoint failed in a way that stops the run (output written so far is kept)."""


class TeacherUnreachableError(TeacherError):
    """No connection to the teacher endpoint."""


@dataclass(frozen=True)
class TeacherConfig:
    """How to talk to the teacher.

    Args:
        base_url: OpenAI-compatible API root (``…/v1``); requests go to ``{base_url}/chat/completions``.
        model: model name sent in every request.
        api_key: bearer token; ``None`` sends no ``Authorization`` header. Never printed.
        max_tokens: longest reasoning in tokens.
        max_tokens_field: request field carrying ``max_tokens`` (``max_completion_tokens`` for
            APIs that reject ``max_tokens``).
        temperature: sampling temperature.
        timeout_s: seconds one request may take.
        max_retries: retries after the first attempt on retryable failures.
        backoff_base_s: first backoff delay; attempt ``k`` waits ``base·2^k`` (capped) times a
            jitter factor in ``[0.5, 1)``.
        backoff_max_s: longest backoff delay.
        requests_per_minute: client-side request rate; ``0`` for no limit.
        seed: seed of the jitter.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key: str | None = field(default=None, repr=False)
    max_tokens: int = 1024
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: float = 0.7
    timeout_s: float = 180.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    requests_per_minute: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, found {self.base_url!r}")
        for name in ("max_tokens", "timeout_s", "backoff_base_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, found {getattr(self, name)}")
        for name in ("max_retries", "requests_per_minute", "temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, found {getattr(self, name)}")

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/")


class RateLimiter:
    """Spaces requests at least ``60 / requests_per_minute`` seconds apart (thread-safe).

    >>> now = [0.0]
    >>> limiter = RateLimiter(120, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    >>> [(limiter.acquire(), now[0])[1] for _ in range(3)]
    [0.0, 0.5, 1.0]
    """

    def __init__(self, requests_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the next request slot."""
        if self.interval == 0:
            return
        with self._lock:
            slot = max(self.clock(), self._next)
            self._next = slot + self.interval
        delay = slot - self.clock()
        if delay > 0:
            self.sleep(delay)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``min(max_s, base_s·2^attempt)``
    times a jitter factor drawn from ``[0.5, 1)``.

    >>> d = backoff_delay(3, 1.0, 60.0, random.Random(0))
    >>> 4.0 <= d < 8.0
    True
    """
    return min(max_s, base_s * 2.0 ** attempt) * (0.5 + 0.5 * rng.random())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds named by a ``Retry-After`` header (delta seconds or an HTTP date), capped at
    :data:`RETRY_AFTER_CAP_S`; ``None`` when absent or unreadable.

    >>> parse_retry_after("3"), parse_retry_after("soon"), parse_retry_after(None)
    (3.0, None, None)
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


class TeacherClient:
    """Chat-completions client with retries, backoff and rate limiting.

    Args:
        config: endpoint and retry settings.
        sleep: sleeping function (tests record delays instead of waiting).
    """

    def __init__(self, config: TeacherConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.sleep = sleep
        self.limiter = RateLimiter(config.requests_per_minute, sleep=sleep)
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        host = urllib.parse.urlsplit(config.root).hostname or ""
        # a server on this machine is never reached through the environment's HTTP proxy
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)

    def probe(self) -> list[str]:
        """Check that the server answers (any HTTP status counts) and return the model names
        ``GET {base_url}/models`` lists (empty when it lists none)."""
        url = f"{self.config.root}/models"
        try:
            with self._opener.open(self._request(url), timeout=min(self.config.timeout_s, 30.0)) as r:
                listing = json.loads(r.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError:
            return []  # reachable; the server simply has no model listing (or wants other auth)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        except ValueError:
            return []
        data = listing.get("data") if isinstance(listing, dict) else None
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) else []

    def chat(self, image_url: str, text: str) -> dict:
        """Send one image and one instruction; return the decoded response JSON."""
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]}],
            self.config.max_tokens_field: self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        return self.post_json(f"{self.config.root}/chat/completions", body)

    def post_json(self, url: str, body: dict) -> dict:
        """POST ``body`` with retries; fail at once on a non-retryable 4xx (body shown)."""
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.config.max_retries + 1):
            self.limiter.acquire()
            retry_after = None
            try:
                with self._opener.open(self._request(url, data), timeout=self.config.timeout_s) as r:
                    raw = r.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise TeacherError(f"{url} answered with something that is not JSON: {_shown(raw)}") from None
            except urllib.error.HTTPError as e:
                text = _shown(_error_body(e))
                if e.code not in RETRY_STATUSES:
                    raise TeacherError(f"{url} answered HTTP {e.code} {e.reason}: {text}") from None
                failure: Exception = TeacherError(f"{url}: {attempt + 1} attempts failed, the last with "
                                                  f"HTTP {e.code} {e.reason}: {text}")
                retry_after = parse_retry_after(e.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                failure = self._unreachable(e, attempts=attempt + 1)
            if attempt < self.config.max_retries:
                self.sleep(retry_after if retry_after is not None else self._backoff(attempt))
        raise failure

    def _backoff(self, attempt: int) -> float:
        with self._rng_lock:
            return backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)

    def _request(self, url: str, data: bytes | None = None) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")

    def _unreachable(self, error: Exception, attempts: int = 1) -> TeacherUnreachableError:
        reason = getattr(error, "reason", None) or error
        return TeacherUnreachableError(
            f"cannot reach the teacher endpoint {self.config.root} ({type(reason).__name__}: {reason}; "
            f"{attempts} attempt(s)). Check that the server is running and listening there (for vLLM: "
            "`vllm serve MODEL --port 8000`), that --base-url is right (it ends in /v1), and that "
            "--timeout is long enough."
        )


def _error_body(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read()
    except (OSError, http.client.HTTPException):
        return b""


def _shown(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= BODY_CHARS_SHOWN else text[:BODY_CHARS_SHOWN] + " …"


# ===================================================================== prompt and reply
