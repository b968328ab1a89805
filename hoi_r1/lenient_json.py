"""Recover a JSON list of elements from model text, leniently, in bounded time, with offsets.

Models write JSON that is almost right: wrapped in a code fence, with prose around it, with
trailing commas, single quotes, missing commas, a bare object instead of a list, or cut off by
the token limit. :func:`read_json_list` reads the list *element by element* with
``json.JSONDecoder.raw_decode`` (never ``eval``), so

* a truncated list keeps every element that was complete;
* each element comes with its ``(start, end)`` character span in the text (the logprob scores
  map label strings to tokens through them);
* it says which repairs were needed, and whether the text was a JSON list exactly as written.

When the first reading is not strict, a length-preserving rewrite is read too (single-quoted
strings → double-quoted, inner ``"`` → ``'`` and ``\\'`` → `` '``; trailing commas → spaces),
and the reading that recovers more elements wins; offsets stay those of the original text.
Integers decode as floats (no digit limit on huge numbers); ``NaN``/``Infinity`` decode as
Python's JSON module does. Deep nesting raises ``RecursionError`` inside the C decoder, which is
caught like any decode error. Work is linear in the text length.

>>> r = read_json_list('Sure! ```json\\n[{"a": 1}, {"b": [2, 3]},]\\n```')
>>> r.elements, r.repairs, r.strict
([{'a': 1.0}, {'b': [2.0, 3.0]}], ('code_fence', 'trailing_commas'), False)
>>> read_json_list('[{"a": 1}, {"b": [2, ').elements, read_json_list('[{"a": 1}, {"b": [2, ').unclosed
([{'a': 1.0}], True)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_DECODER = json.JSONDecoder(parse_int=float)
_JSON_LIKE_TOKEN = re.compile(
    r'(?P<dq>"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z))'  # double-quoted string (an unclosed one runs to the end)
    r"|(?P<sq>'[^'\\]*(?:\\.[^'\\]*)*(?:'|\Z))"  # single-quoted string
    r"|(?P<tc>,(?=[ \t\r\n]*[\]}]))"  # trailing comma
    r"|(?P<other>[^\"',]+|,)",
    re.S,
)
_NOT_WHITESPACE = re.compile(r"[^ \t\r\n]")


@dataclass
class JsonListReading:
    """What :func:`read_json_list` recovered.

    Args:
        elements: decoded elements, in order.
        spans: ``(start, end)`` of each element in the text given.
        strict: the text range is exactly one JSON list (surrounding whitespace allowed).
        decoded: a list was recovered (closed, or with at least one element).
        unclosed: a list was opened and never closed (the text looks cut off).
        capped: reading stopped at ``max_elements``.
        repairs: ``code_fence``, ``extra_text``, ``bare_objects``, ``missing_commas``,
            ``trailing_commas``, ``single_quotes`` — in the order met.
    """

    elements: list = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    strict: bool = False
    decoded: bool = False
    unclosed: bool = False
    capped: bool = False
    repairs: tuple[str, ...] = ()


def read_json_list(text: str, start: int = 0, end: int | None = None, max_elements: int = 300) -> JsonListReading:
    """Read the JSON list in ``text[start:end]``; spans are offsets into ``text``."""
    end = len(text) if end is None else end
    repairs: list[str] = []
    fence = text.find("```", start, end)
    if fence >= 0:
        body = fence + 3
        while body < end and text[body].isalpha():  # ```json
            body += 1
        close = text.find("```", body, end)
        start, end = body, (close if close >= 0 else end)
        repairs.append("code_fence")
    payload = text[start:end]
    reading = _scan(payload, start, max_elements)
    if not reading.strict:
        rewritten, fixes = _rewrite(payload)
        if fixes:
            second = _scan(rewritten, start, max_elements)
            more = len(second.elements) > len(reading.elements)
            if more or (len(second.elements) == len(reading.elements) and reading.unclosed and not second.unclosed):
                second.repairs, second.strict = tuple(fixes) + second.repairs, False
                reading = second
    if repairs:
        reading.repairs, reading.strict = tuple(repairs) + reading.repairs, False
    reading.repairs = tuple(dict.fromkeys(reading.repairs))
    return reading


def _scan(s: str, base: int, max_elements: int) -> JsonListReading:
    """One reading of ``s``: a ``[...]`` list, or a run of bare ``{...}`` objects."""
    reading = JsonListReading()
    bracket, brace = s.find("["), s.find("{")
    if bracket < 0 and brace < 0:
        return reading
    repairs: list[str] = []
    bare = bracket < 0 or 0 <= brace < bracket
    opening = brace if bare else bracket
    if _skip_ws(s, 0) != opening:
        repairs.append("extra_text")
    if bare:
        repairs.append("bare_objects")
    pos = opening if bare else opening + 1
    need_comma = closed = False
    while (pos := _skip_ws(s, pos)) < len(s):
        ch = s[pos]
        if ch == "]" and not bare:
            closed, pos = True, pos + 1
            if reading.elements and not need_comma:
                repairs.append("trailing_commas")
            break
        if ch == ",":
            if not need_comma:
                repairs.append("trailing_commas")
            need_comma, pos = False, pos + 1
            continue
        if bare and ch != "{":
            break
        if need_comma:
            repairs.append("missing_commas")
        if len(reading.elements) >= max_elements:
            reading.capped = True
            break
        try:
            value, stop = _DECODER.raw_decode(s, pos)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            break
        reading.elements.append(value)
        reading.spans.append((base + pos, base + stop))
        pos, need_comma = stop, True
    if closed and _skip_ws(s, pos) < len(s):
        repairs.append("extra_text")
    reading.unclosed = not bare and not closed and not reading.capped
    reading.decoded = closed or bool(reading.elements)
    reading.strict = not bare and closed and not repairs
    reading.repairs = tuple(repairs)
    return reading


def _rewrite(s: str) -> tuple[str, list[str]]:
    """The length-preserving rewrite described in the module docstring, and the fixes it made."""
    out: list[str] = []
    fixes: list[str] = []
    for m in _JSON_LIKE_TOKEN.finditer(s):
        tok, kind = m.group(), m.lastgroup
        if kind == "sq":
            closed = len(tok) > 1 and tok.endswith("'") and not tok.endswith("\\'")
            inner = (tok[1:-1] if closed else tok[1:]).replace("\\'", " '").replace('"', "'")
            tok = '"' + inner + ('"' if closed else "")
            fixes.append("single_quotes")
        elif kind == "tc":
            tok = " "
            fixes.append("trailing_commas")
        out.append(tok)
    return "".join(out), list(dict.fromkeys(fixes))


def _skip_ws(s: str, pos: int) -> int:
    m = _NOT_WHITESPACE.search(s, pos)
    return len(s) if m is None else m.start()
