"""Rollout batches: the ``G`` copies of each prompt, micro-batch slices, prompt + completion rows,
and the buffer that holds one generation batch while it is served as micro-batches.

Qwen-VL processors concatenate the image patches of a whole batch into one ``pixel_values``
tensor ``(Σ_i t_i·h_i·w_i, D)`` with one ``image_grid_thw`` row ``(t, h, w)`` per image. Taking
rows of a batch (the ``G`` copies of a prompt, a micro-batch) therefore means taking each row's
own block of patches; :func:`select_prompts` does
that, assuming one image per prompt (the project's prompts hold exactly one).

>>> grid = torch.tensor([[1, 2, 2], [1, 2, 4]])          # 4 and 8 patches
>>> pixels = torch.arange(12.0)[:, None]                  # (12, 1)
>>> [p.flatten().tolist() for p in split_pixel_values(pixels, grid)]
[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]
>>> batch = {"input_ids": torch.tensor([[0, 5], [6, 7]]), "attention_mask": torch.tensor([[0, 1], [1, 1]]),
...          "pixel_values": pixels, "image_grid_thw": grid}
>>> picked = select_prompts(batch, torch.tensor([1, 0, 0]))
>>> picked["image_grid_thw"][:, 2].tolist(), picked["pixel_values"].shape[0]
([4, 2, 2], 16)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

PROMPT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
"""Per-token prompt tensors ``(B, L)``."""


def split_pixel_values(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
    """Each image's block of ``pixel_values`` (``t·h·w`` patch rows per image)."""
    counts = image_grid_thw.prod(dim=-1).tolist()
    if sum(counts) != pixel_values.shape[0]:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[0]} patch rows but image_grid_thw describes {sum(counts)}"
        )
    return list(torch.split(pixel_values, counts, dim=0))


def select_prompts(batch: dict, rows: torch.Tensor) -> dict:
    """The prompt tensors of ``rows`` (repeats allowed), images included, left padding trimmed.

    Args:
        batch: a generation batch: left-padded ``input_ids`` / ``attention_mask`` ``(B, L)``
            (and ``mm_token_type_ids``), ``pixel_values`` and ``image_grid_thw`` (one image per row).
        rows: ``(R,)`` row indices into the batch.

    Returns:
        The same keys for ``R`` rows; columns that are padding in every selected row are dropped.
    """
    rows = rows.to(batch["input_ids"].device)
    out = {k: batch[k][rows] for k in PROMPT_KEYS if k in batch}
    keep = out["attention_mask"].any(dim=0).nonzero()
    if len(keep):  # left padding: drop the leading all-pad columns
        first = int(keep[0])
        out = {k: v[:, first:] for k, v in out.items()}
    if "pixel_values" in batch:
        grid = batch["image_grid_thw"]
        if grid.shape[0] != batch["input_ids"].shape[0]:
            raise ValueError(
                f"one image per prompt expected: {batch['input_ids'].shape[0]} prompts, {grid.shape[0]} images"
            )
        blocks = split_pixel_values(batch["pixel_values"], grid)
        out["pixel_values"] = torch.cat([blocks[i] for i in rows.tolist()])
        out["image_grid_thw"] = grid[rows]
    return out


def join_completions(prompts: dict, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> dict:
    """Model inputs of prompt + completion rows: ``[pad…prompt][completion…pad]``.

    Args:
        prompts: :func:`select_prompts` output for the same ``R`` rows.
        completion_ids: ``(R, T)`` completion tokens.
        completion_mask: ``(R, T)`` 1 on real completion tokens.

    >>> p = {"input_ids": torch.tensor([[0, 5]]), "attention_mask": torch.tensor([[0, 1]])}
    >>> j = join_completions(p, torch.tensor([[8, 9]]), torch.tensor([[1, 0]]))
    >>> j["input_ids"].tolist(), j["attention_mask"].tolist()
    ([[0, 5, 8, 9]], [[0, 1, 1, 0]])
    """
    ids = completion_ids.to(prompts["input_ids"].device)
    mask = completion_mask.to(prompts["attention_mask"].device, prompts["attention_mask"].dtype)
    out = dict(prompts)
    out["input_ids"] = torch.cat([prompts["input_ids"], ids], dim=1)
    out["attention_mask"] = torch.cat([prompts["attention_mask"], mask], dim=1)
    if "mm_token_type_ids" in prompts:  # completions are text (type 0)
        types = prompts["mm_token_type_ids"]
        out["mm_token_type_ids"] = torch.cat([types, torch.zeros(ids.shape, dtype=types.dtype, device=types.device)], 1)
    return out


def trim_completions(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop trailing columns that are padding in every row (at least one column is kept).

    >>> trim_completions(torch.tensor([[1, 2, 0], [3, 0, 0]]), torch.tensor([[1, 1, 0], [1, 0, 0]]))[0].tolist()
    [[1, 2], [3, 0]]
    """
    used = mask.any(dim=0).nonzero()
    width = int(used[-1]) + 1 if len(used) else 1
    return ids[:, :width], mask[:, :width]


def micro_batch_rows(total: int, parts: int, index: int) -> slice:
    """Rows of micro-batch ``index`` when ``total`` rows are cut into ``parts`` equal parts.

    >>> micro_batch_rows(8, 4, 1)
    slice(2, 4, None)
    """
    if parts < 1 or total % parts:
        raise ValueError(f"{total} completions cannot be cut into {parts} equal micro-batches")
    if not 0 <= index < parts:
        raise ValueError(f"micro-batch {index} out of range 0..{parts - 1}")
    size = total // parts
    return slice(index * size, (index + 1) * size)


@dataclass
class RolloutBuffer:
    """One generation batch of a rank, served as ``micro_batches`` micro-batches.

    Args:
        image_ids: the prompts' image ids (a re-served batch must be the same prompts).
        group_size: ``G``, completions per prompt (rows ``i·G … i·G + G − 1`` belong to prompt ``i``).
        micro_batches: micro-batches the ``B·G`` completion rows are cut into.
        completion_ids: ``(B·G, T)`` sampled tokens.
        completion_mask: ``(B·G, T)`` 1 on real completion tokens.
        advantages: ``(B·G,)`` group-relative advantages, or ``(B·G, T)`` per token (triplet credit).
        num_items: ``dapo`` normaliser: active tokens of the generation batch over all ranks ÷ world size.
        old_logp: ``(B·G, T)`` log-probs under the sampling policy (when updates go off-policy).
        ref_logp: ``(B·G, T)`` log-probs under the reference policy (``β > 0``).
        sampler_logp: ``(B·G, T)`` the engine's own log-probs (importance correction).
        score_index: ``(B·G, T)`` per token, the triplet of its row whose label it belongs to
            (-1: none), for the calibration term (:mod:`hoi_r1.calibration`).
        score_targets: ``(B·G, K)`` per triplet, the mean verdict of its detections.
        score_weights: ``(B·G, K)`` per triplet, its detections (0: padding).
        score_total: detections of the generation batch (the calibration term's normaliser).
        turns: tool-using episodes: per row, its turns as plain data (texts, images as uint8
            tensors), from which each micro-batch's sequences are rebuilt; ``completion_ids`` /
            ``completion_mask`` then run from the first model token on.
        prompts: the batch position of each buffered group's prompt, when dynamic sampling
            (:mod:`hoi_r1.dynamic_sampling`) kept only some of the batch's prompts; ``None``: all,
            in batch order.
    """

    image_ids: list[int]
    group_size: int
    micro_batches: int
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    num_items: float
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    sampler_logp: torch.Tensor | None = None
    score_index: torch.Tensor | None = None
    score_targets: torch.Tensor | None = None
    score_weights: torch.Tensor | None = None
    score_total: float = 0.0
    turns: list | None = None
    prompts: list[int] | None = None

    def rows(self, micro: int) -> slice:
        return micro_batch_rows(self.completion_ids.shape[0], self.micro_batches, micro)

    def prompt_rows(self, micro: int) -> torch.Tensor:
        """Prompt index of each completion row of micro-batch ``micro``."""
        r = self.rows(micro)
        groups = torch.arange(r.start, r.stop) // self.group_size
        return groups if self.prompts is None else torch.tensor(self.prompts, dtype=torch.long)[groups]

    def state_dict(self) -> dict:
        """Plain values and CPU tensors (``torch.load(weights_only=True)`` reads them)."""
        return {
            f.name: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> "RolloutBuffer":
        return cls(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()})

    def to(self, device: torch.device | str) -> "RolloutBuffer":
        return RolloutBuffer.from_state_dict(self.state_dict(), device)
