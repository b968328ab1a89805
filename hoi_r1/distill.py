"""Thinking distillation data (HOI-R1's SFT stage): a teacher model writes the reasoning that
leads to each training image's ground-truth answer.

HOI-R1 (arXiv 2510.05609) fine-tunes on ``<think>teacher reasoning</think><answer>ground
truth</answer>``. ``hoi-r1 distill`` (:func:`main`) collects the reasoning half:

1. each training image goes, as a base64 data URL, with its answer (:func:`hoi_r1.answer_render.render_answer`
   in the ``--frame`` coordinate frame, dataset vocabulary) to an OpenAI-compatible
   ``POST {base_url}/chat/completions`` endpoint (a local vLLM server or a hosted API);
2. the instruction (:func:`distillation_prompt`) asks for the step-by-step reasoning that
   arrives at that answer, written as a discovery, in plain text, without the answer itself;
3. :func:`extract_reasoning` keeps the reasoning of ``choices[0].message.content`` (teachers
   that copy the ``<think>``/``<answer>`` layout anyway are unwrapped);
4. one ``{"file_name", "reasoning"}`` JSON line per image is appended, in the input order, and
   flushed at once; :func:`hoi_r1.image_dataset.read_reasonings` reads the file (``data.reasoning_file``).

The endpoint is :class:`hoi_r1.teacher_client.TeacherClient` (the ``openai`` SDK, extra
``hoi-r1[distill]``): a probe of ``{base_url}/models`` before the first image (an unreachable
server is one clear error); the SDK's retries with backoff on connection errors, timeouts, 429
and 5xx, honouring ``Retry-After`` (``--max-retries``, ``--timeout``); an immediate error naming
the endpoint, the image and the HTTP status on any other 4xx; client-side request spacing; up to
``--max-concurrency`` requests in flight; and resumption: file names already in the output are
skipped, a half-written last line is cut off (:func:`completed_file_names`).
User guide: ``docs/distill.md``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence, TextIO

from PIL import Image, ImageOps

from hoi_r1.answer import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FRAME_KINDS, Frame
from hoi_r1.progress import progress_bar
from hoi_r1.prompts import THINKING_STEPS
from hoi_r1.readers import read_annotations
from hoi_r1.sample import HOISample
from hoi_r1.teacher_client import TeacherClient, TeacherConfig, TeacherError, _shown
from hoi_r1.vocab import HOIVocabulary


def answer_json(sample: HOISample, vocab: HOIVocabulary, frame: Frame) -> str:
    """The ground-truth answer list of ``sample`` as the SFT target writes it (JSON text)."""
    text = render_answer(sample, vocab, frame, reasoning="")
    return text[text.index(ANSWER_OPEN) + len(ANSWER_OPEN):text.rindex(ANSWER_CLOSE)]


def distillation_prompt(answer: str, frame: Frame) -> str:
    """The teacher instruction for one image whose correct answer is ``answer`` (a JSON list).

    >>> text = distillation_prompt("[]", Frame("normalized_1000", (64, 48), (64, 48)))
    >>> "[]" in text and "0 to 1000" in text
    True
    """
    if frame.kind == "normalized_1000":
        where = "Boxes are [x1, y1, x2, y2] on a scale from 0 to 1000 across the image's width and height."
    else:
        w, h = frame.text_size
        where = f"Boxes are [x1, y1, x2, y2] in pixels of the image seen at {w}x{h}, origin at the top-left."
    steps = "\n".join(f"{i}. {q}" for i, q in enumerate(THINKING_STEPS, start=1))
    return (
        "This image shows people and objects. The correct list of person-object interactions in it "
        f"is:\n{answer}\n{where} An empty list means nobody interacts with an object.\n\n"
        "Write the step-by-step reasoning of someone who looks at the image and arrives at exactly "
        f"this list, answering these questions in order:\n{steps}\n\n"
        "Write it as if you were discovering the answer yourself: never say or hint that the answer "
        "was given. Refer to people and objects by what they look like and where they are in the "
        "image (left, right, top, near the table); do not write box coordinates and do not repeat "
        "the list. Plain text only: no JSON, no tags, no Markdown, no final answer."
    )


def extract_reasoning(content: object) -> str:
    """The reasoning in a teacher reply: ``<answer>`` blocks dropped; the text outside
    ``<think>…</think>`` if any, else the text inside it; tags and surrounding space removed.

    >>> extract_reasoning("<think>Two people.</think><answer>[]</answer>")
    'Two people.'
    >>> extract_reasoning("hidden notes</think>One person rides the bicycle.")
    'One person rides the bicycle.'
    >>> extract_reasoning([{"type": "text", "text": " A man holds a cup. "}])
    'A man holds a cup.'
    """
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        return ""
    text = content
    while ANSWER_OPEN in text:
        start = text.index(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        text = text[:start] + ("" if end < 0 else text[end + len(ANSWER_CLOSE):])
    if THINK_CLOSE in text:
        inside, _, outside = text.partition(THINK_CLOSE)
        inside = inside.split(THINK_OPEN, 1)[-1]
        text = outside if outside.replace(THINK_CLOSE, "").strip() else inside
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        text = text.replace(tag, "")
    return text.strip()


def encode_image(sample: HOISample) -> str:
    """The image of ``sample`` as a data URL: the file's own bytes for an upright JPEG or PNG,
    else re-encoded upright (EXIF orientation applied) as PNG. Its size must match the annotation."""
    path = Path(sample.image_path)
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
            upright = im if orientation == 1 else ImageOps.exif_transpose(im)
            if upright.size != (sample.width, sample.height):
                raise ValueError(f"image file {path} is {upright.size[0]}x{upright.size[1]} but its annotation "
                                 f"says {sample.width}x{sample.height}; the answer boxes would not line up")
            if orientation == 1 and im.format in ("JPEG", "PNG"):
                mime, payload = f"image/{im.format.lower()}", path.read_bytes()
            else:
                buffer = io.BytesIO()
                upright.convert("RGB").save(buffer, format="PNG")
                mime, payload = "image/png", buffer.getvalue()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist (check --images)") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"image file {path} cannot be read: {e}") from None
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


# ===================================================================== output file and run
def completed_file_names(path: str | Path) -> set[str]:
    """File names that already have a line in the output ``path`` (empty when it does not exist).

    A last line cut off by a killed run is removed from the file; a complete last line without
    its newline gets one. A bad line elsewhere is an error naming the line.
    """
    path = Path(path)
    if not path.exists():
        return set()
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    done: set[str] = set()
    offset = 0
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)  # the text after the final newline (empty unless cut off)
        if line.strip():
            try:
                record = json.loads(line)
                name, reasoning = record["file_name"], record["reasoning"]
                if not isinstance(name, str) or not isinstance(reasoning, str):
                    raise TypeError("file_name and reasoning must be strings")
            except (ValueError, KeyError, TypeError) as e:
                if not last:
                    raise ValueError(f"{path}, line {n}: expected a {{\"file_name\", \"reasoning\"}} JSON line "
                                     f"({e}); fix or remove that line") from None
                with path.open("r+b") as f:  # a partial line from an interrupted run
                    f.truncate(offset)
                break
            done.add(name)
            if last:
                with path.open("ab") as f:
                    f.write(b"\n")
        offset += len(line) + 1
    return done


@dataclass
class DistillSummary:
    """What a run did.

    Args:
        considered: images of the dataset considered (after ``--limit``).
        already_done: images skipped because the output already had them.
        written: lines appended in this run.
        skipped: per file name, why no line was written (empty or truncated reasoning).
    """

    considered: int = 0
    already_done: int = 0
    written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def distill(
    samples: Sequence[HOISample],
    vocab: HOIVocabulary,
    out: str | Path,
    client: TeacherClient,
    frame_kind: str = "absolute_original",
    max_concurrency: int = 4,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    log: Callable[[str], None] = print,
) -> DistillSummary:
    """Ask the teacher for the reasoning of every sample not yet in ``out`` and append it there.

    At most ``max_concurrency`` requests are in flight. Lines are written by this thread only,
    in the order of ``samples``, each flushed to disk at once (a finished reply waits for the
    earlier ones; at most ``4 * max_concurrency`` images are started ahead of the first
    unwritten one). On a :class:`TeacherError` no new request starts, the requests in flight
    finish, every finished reply is written (in order), and the error is raised.

    Args:
        samples: training images with their annotations.
        vocab: the vocabulary whose names the answers use.
        out: output JSONL (appended to; created with its folder when missing).
        client: the teacher client.
        frame_kind: coordinate frame of the answers shown to the teacher.
        max_concurrency: most requests in flight at once (threads).
        min_pixels: processor's smallest image area (``absolute_resized`` frames only).
        max_pixels: processor's largest image area (``absolute_resized`` frames only).
        log: where progress lines go.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, found {max_concurrency}")
    out = Path(out)
    done = completed_file_names(out)
    summary = DistillSummary(considered=len(samples))
    pending, seen = [], set()
    for sample in samples:
        if sample.file_name not in seen:
            seen.add(sample.file_name)
            summary.already_done += sample.file_name in done
            if sample.file_name not in done:
                pending.append(sample)
    log(f"{len(pending)} images to send to the teacher ({summary.already_done} already in {out})")

    def one(sample: HOISample) -> tuple[HOISample, str, str]:
        frame = Frame.for_image(frame_kind, sample.width, sample.height, min_pixels, max_pixels)
        prompt = distillation_prompt(answer_json(sample, vocab, frame), frame)
        reply = client.chat(encode_image(sample), prompt, image=sample.file_name)
        try:
            choice = reply["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TeacherError(f"{sample.file_name}: the reply has no choices[0].message: "
                               f"{_shown(json.dumps(reply).encode())}") from None
        if choice.get("finish_reason") == "length":
            return sample, "", "the reasoning was cut at --max-tokens"
        reasoning = extract_reasoning(content)
        return sample, reasoning, "" if reasoning else "the reply held no reasoning text"

    out.parent.mkdir(parents=True, exist_ok=True)
    error: BaseException | None = None
    start = time.perf_counter()
    window = 4 * max_concurrency
    finished_results: dict[int, tuple[HOISample, str, str]] = {}  # index in pending -> result
    submitted = written_upto = 0  # pending[:written_upto] are written (or skipped)

    def write(sink: TextIO, sample: HOISample, reasoning: str, why: str) -> None:
        if not reasoning:
            summary.skipped[sample.file_name] = why
            log(f"warning: {sample.file_name}: {why}; no line written")
            return
        sink.write(json.dumps({"file_name": sample.file_name, "reasoning": reasoning}) + "\n")
        sink.flush()
        os.fsync(sink.fileno())
        summary.written += 1
        if summary.written % 25 == 0:
            rate = summary.written / max(time.perf_counter() - start, 1e-9) * 60
            log(f"{summary.written}/{len(pending)} written ({rate:.1f} images/min)")

    with out.open("a", encoding="ascii") as sink, ThreadPoolExecutor(max_workers=max_concurrency) as pool, \
            progress_bar(len(pending), "distill") as bar:
        running: dict[Future, int] = {}
        while True:
            while (error is None and len(running) < max_concurrency and submitted < len(pending)
                   and submitted - written_upto < window):
                running[pool.submit(one, pending[submitted])] = submitted
                submitted += 1
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                bar.update(1)
                try:
                    finished_results[index] = future.result()
                except Exception as e:  # noqa: BLE001 - the first error stops the run, the rest finish
                    error = error or e
            while written_upto in finished_results:
                write(sink, *finished_results.pop(written_upto))
                written_upto += 1
        for index in sorted(finished_results):  # after an error: replies that came after a failed one
            write(sink, *finished_results.pop(index))
    if error is not None:
        raise error
    return summary


REMOVED_FLAGS = {
    "--backoff-base": "the openai SDK retries with its own exponential backoff (and honours Retry-After); "
                      "tune --max-retries and --timeout instead",
    "--seed": "the openai SDK's retry jitter is not seeded; drop the flag",
}
"""Flags of the hand-written client that no longer apply, with the reason shown when one is given."""


def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 distill``: write the teacher reasoning JSONL for a training split."""
    d = TeacherConfig()
    parser = argparse.ArgumentParser(prog="hoi-r1 distill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True, help="training annotation file (JSON or anno_bbox.mat)")
    parser.add_argument("--images", default=None, help="image folder (default: the annotation file's folder)")
    parser.add_argument("--categories", default=None, help="SWIG-HOI category metadata")
    parser.add_argument("--mat-split", choices=["train", "test"], default="train", help="split of anno_bbox.mat")
    parser.add_argument("--out", required=True, help="output JSONL (appended to; rerun to resume)")
    parser.add_argument("--base-url", default=d.base_url, help="OpenAI-compatible API root (default: %(default)s)")
    parser.add_argument("--model", default=None, help="teacher model name (default: the first the server lists)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key; unset sends none (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens, help="default: %(default)s")
    parser.add_argument("--max-tokens-field", choices=["max_tokens", "max_completion_tokens"],
                        default=d.max_tokens_field, help="request field of --max-tokens (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=d.temperature, help="default: %(default)s")
    parser.add_argument("--requests-per-minute", type=float, default=d.requests_per_minute,
                        help="client-side spacing of requests, 0 for none (default: %(default)s)")
    parser.add_argument("--max-retries", type=int, default=d.max_retries,
                        help="retries of one request by the openai SDK (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=d.timeout_s,
                        help="seconds per attempt, the SDK's timeout (default: %(default)s)")
    parser.add_argument("--max-concurrency", "--workers", dest="max_concurrency", type=int, default=4,
                        help="most requests in flight at once (--workers is the old name; default: %(default)s)")
    for removed in REMOVED_FLAGS:
        parser.add_argument(removed, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help="only the first LIMIT images of the file")
    parser.add_argument("--frame", choices=FRAME_KINDS, default="absolute_original",
                        help="coordinate frame of the answers shown to the teacher (default: %(default)s)")
    parser.add_argument("--min-pixels", type=int, default=DEFAULT_MIN_PIXELS, help="for --frame absolute_resized")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="for --frame absolute_resized")
    parser.add_argument("--no-probe", action="store_true", help="skip the GET {base-url}/models check")
    args = parser.parse_args(argv)
    for removed, why in REMOVED_FLAGS.items():
        if getattr(args, removed.lstrip("-").replace("-", "_")) is not None:
            parser.error(f"{removed} was removed: {why}")
    if args.max_concurrency < 1:
        parser.error(f"--max-concurrency must be at least 1, found {args.max_concurrency}")
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must not be negative, found {args.limit}")
    try:
        config = TeacherConfig(
            base_url=args.base_url, model=args.model or "", api_key=os.environ.get(args.api_key_env) or None,
            max_tokens=args.max_tokens, max_tokens_field=args.max_tokens_field, temperature=args.temperature,
            timeout_s=args.timeout, max_retries=args.max_retries, requests_per_minute=args.requests_per_minute,
        )
    except ValueError as e:
        parser.error(str(e))
    try:
        dataset = read_annotations(args.annotations, image_root=args.images, categories=args.categories,
                                   split=args.mat_split)
    except (OSError, ValueError) as e:
        print(f"hoi-r1 distill: {e}", file=sys.stderr)
        return 2
    samples = dataset.samples[: args.limit] if args.limit is not None else dataset.samples
    print(f"{len(samples)} images from {args.annotations}; teacher {config.root} "
          f"({'API key from $' + args.api_key_env if config.api_key else 'no API key'})")
    try:
        client = TeacherClient(config)
    except ImportError as e:
        print(f"hoi-r1 distill: {e}", file=sys.stderr)
        return 2
    try:
        if not args.no_probe:
            listed = client.probe()
            if not args.model and listed:
                client.config = config = replace(config, model=listed[0])
                print(f"using the model the server lists first: {config.model}")
            elif args.model and listed and args.model not in listed:
                print(f"warning: the server lists {listed}, not {args.model!r}", file=sys.stderr)
        if not config.model:
            parser.error("--model is needed (the server listed no model, or --no-probe was given)")
        summary = distill(samples, dataset.vocab, args.out, client, args.frame, args.max_concurrency,
                          args.min_pixels, args.max_pixels)
    except (TeacherError, OSError, ValueError) as e:
        print(f"hoi-r1 distill: {e}", file=sys.stderr)
        if Path(args.out).exists():
            have = len(completed_file_names(args.out))
            print(f"{args.out} holds {have} reasonings; run the same command again to continue", file=sys.stderr)
        return 1
    print(f"wrote {summary.written} reasonings to {args.out} ({summary.already_done} were already there, "
          f"{len(summary.skipped)} images without a usable reasoning)")
    if summary.skipped:
        print(f"{len(summary.skipped)} images have no reasoning; run the same command again to retry them",
              file=sys.stderr)
    return 1 if summary.skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
