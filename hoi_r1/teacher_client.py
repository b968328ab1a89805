"""The teacher endpoint of :mod:`hoi_r1.distill`: an OpenAI-compatible chat-completions client
built on the official ``openai`` SDK (optional extra ``hoi-r1[distill]``, imported only when a
client is made). The SDK retries connection errors, timeouts, HTTP 408, 409, 429 and 5xx with
exponential backoff, honouring ``Retry-After``; this module adds a start-up probe, client-side
request spacing, and errors that name the endpoint, the image and the HTTP status.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

BODY_CHARS_SHOWN = 2000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
INSTALL_HINT = "the teacher client needs the openai package: pip install 'hoi-r1[distill]'"


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
        timeout_s: seconds one attempt may take (the SDK's ``timeout``).
        max_retries: retries after the first attempt on retryable failures (the SDK's ``max_retries``).
        requests_per_minute: client-side spacing of requests (first attempts; the SDK's retries
            are not spaced); ``0`` for no limit.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key: str | None = field(default=None, repr=False)
    max_tokens: int = 1024
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: float = 0.7
    timeout_s: float = 180.0
    max_retries: int = 5
    requests_per_minute: float = 60.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, found {self.base_url!r}")
        for name in ("max_tokens", "timeout_s"):
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


def _openai() -> Any:
    try:
        import openai
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return openai


class TeacherClient:
    """Chat-completions client (thread-safe: one SDK client shared by all request threads).

    Args:
        config: endpoint, retry and timeout settings.
        sleep: sleeping function of the request spacing.
    """

    def __init__(self, config: TeacherConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self._openai = openai = _openai()
        self.config = config
        self.limiter = RateLimiter(config.requests_per_minute, sleep=sleep)
        host = urllib.parse.urlsplit(config.root).hostname or ""
        # a server on this machine is never reached through the environment's HTTP proxy
        http_client = openai.DefaultHttpxClient(trust_env=False) if host in LOOPBACK_HOSTS else None
        # no key: the SDK insists on one, so a placeholder, and every request omits the header
        self._client = openai.OpenAI(base_url=config.root, api_key=config.api_key or "no-key",
                                     timeout=config.timeout_s, max_retries=config.max_retries,
                                     http_client=http_client)
        self._headers = {} if config.api_key else {"Authorization": openai.Omit()}

    def probe(self) -> list[str]:
        """Check that the server answers (any HTTP status counts) and return the model names
        ``GET {base_url}/models`` lists (empty when it lists none). One attempt, no retries."""
        openai = self._openai
        try:
            page = self._client.with_options(max_retries=0, timeout=min(self.config.timeout_s, 30.0)).models.list(
                extra_headers=self._headers)
            return [str(m.id) for m in page.data if getattr(m, "id", None) is not None]
        except openai.APIConnectionError as e:
            raise self._unreachable(e, attempts=1) from None
        except (openai.APIStatusError, openai.APIResponseValidationError, ValueError, TypeError, AttributeError):
            return []  # reachable; the server simply has no usable model listing (or wants other auth)

    def chat(self, image_url: str, text: str, image: str = "") -> dict:
        """Send one image (``image_url``, a data URL) and one instruction; return the response as
        a dict (``choices[0].message.content`` …). ``image`` names the image in errors."""
        openai = self._openai
        self.limiter.acquire()
        url = f"{self.config.root}/chat/completions"
        for_image = f" for image {image}" if image else ""
        try:
            completion = self._client.chat.completions.create(
                model=self.config.model,
                messages=[{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]}],
                temperature=self.config.temperature,
                extra_headers=self._headers,
                **{self.config.max_tokens_field: self.config.max_tokens},
            )
        except openai.APIConnectionError as e:
            raise self._unreachable(e, attempts=self.config.max_retries + 1) from None
        except openai.APIStatusError as e:
            retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
            attempts = (f"{self.config.max_retries + 1} attempts failed, the last with " if retryable else "")
            raise TeacherError(f"{url}{for_image}: {attempts}HTTP {e.status_code}: {_shown(e.response.text)}") from None
        except openai.APIResponseValidationError as e:
            raise TeacherError(f"{url}{for_image} answered with something that is not chat-completions "
                               f"JSON: {_shown(e.response.text)}") from None
        if not hasattr(completion, "model_dump"):  # a 200 body that is not JSON comes back as text
            raise TeacherError(f"{url}{for_image} answered with something that is not JSON: {_shown(str(completion))}")
        return completion.model_dump()

    def _unreachable(self, error: Exception, attempts: int) -> TeacherUnreachableError:
        cause = error.__cause__ or error
        return TeacherUnreachableError(
            f"cannot reach the teacher endpoint {self.config.root} ({type(cause).__name__}: {cause}; "
            f"{attempts} attempt(s)). Check that the server is running and listening there (for vLLM: "
            "`vllm serve MODEL --port 8000`), that --base-url is right (it ends in /v1), and that "
            "--timeout is long enough."
        )


def _shown(raw: bytes | str) -> str:
    text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).strip()
    return text if len(text) <= BODY_CHARS_SHOWN else text[:BODY_CHARS_SHOWN] + " …"
