"""The synthetic HOI world written as a HICO-DET-format dataset: the default data of the demo
and the tests (users: ``docs/synthetic.md``; the knobs and the scene model:
:mod:`hoi_r1.synthetic.scene`; the relation rules: :mod:`hoi_r1.synthetic.relations`; the
sampler: :mod:`hoi_r1.synthetic.scene_sampler`; drawing: :mod:`hoi_r1.synthetic.render`).

:func:`generate_world` writes ``images/{train,test}/*.png``, ``train.json`` / ``test.json``
(PPDM/QPIC JSON), ``corre.npy`` and ``vocabulary.json``; :func:`hoi_r1.readers.read_annotations`
reads them back. Everything follows from :class:`SyntheticWorldConfig`, and the same seed
writes byte-identical files. ``hoi-r1 synth`` is :func:`main`.

>>> config = SyntheticWorldConfig(num_train=4, num_test=2, grid=14)
>>> config.width, config.height, config.max_people
(112, 112, 2)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from hoi_r1.progress import progress
from hoi_r1.readers.hico_det import write_hico_json, write_validity_npy
from hoi_r1.sample import HOISample
from hoi_r1.synthetic.render import render_scene
from hoi_r1.synthetic.scene import Scene, SyntheticWorldConfig, synthetic_vocabulary
from hoi_r1.synthetic.scene_sampler import sample_scene
from hoi_r1.vocab import count_pairs


# --------------------------------------------------------------------- the dataset
def scene_to_sample(scene: Scene, image_id: int, file_name: str, image_path: str) -> HOISample:
    """The :class:`HOISample` of a scene (boxes as float pixels, class ids from the vocabulary)."""
    vocab = synthetic_vocabulary()
    labels = [o.label for o in scene.objects]
    pairs = [(h, o, v, vocab.interaction_id(v, labels[o])) for h, o, v in scene.pairs]
    return HOISample(
        image_id=image_id, file_name=file_name, image_path=image_path, width=scene.width, height=scene.height,
        human_boxes=[p.box for p in scene.people], object_boxes=[o.box for o in scene.objects],
        object_labels=labels, pairs=pairs,
    )


SPLIT_STREAMS = {"train": 0, "test": 1, "val": 2}
"""Random stream of each split: image ``i`` of ``split`` draws from ``(seed, SPLIT_STREAMS[split], i)``."""


def generate_split(
    out_dir: str | Path, split: Literal["train", "test", "val"], config: SyntheticWorldConfig
) -> list[HOISample]:
    """Sample, render and save the images of one split; returns their samples. Image ``i``
    uses the random stream ``(seed, split, i)``, so images do not depend on one another (and
    adding a validation split leaves the training and test images as they were)."""
    out_dir = Path(out_dir)
    count = {"train": config.num_train, "test": config.num_test, "val": config.num_val}[split]
    vocab = synthetic_vocabulary()
    unseen = set(vocab.zero_shot["unseen_composition"])
    held_out = unseen if split == "train" and config.zero_shot_holdout else set()
    allowed = [i for i in range(vocab.num_classes) if i not in held_out]
    (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
    samples = []
    for i in progress(range(count), f"synth {split}"):
        rng = np.random.default_rng([config.seed, SPLIT_STREAMS[split], i])
        scene = sample_scene(rng, config, allowed)
        file_name = f"images/{split}/synthetic_{split}_{i:06d}.{config.image_format}"
        image = render_scene(scene)
        if config.image_format == "png":
            image.save(out_dir / file_name, format="PNG", compress_level=1)
        else:
            image.save(out_dir / file_name, format="JPEG", quality=95)
        samples.append(scene_to_sample(scene, i, file_name, str(out_dir / file_name)))
    return samples


def generate_world(out_dir: str | Path, config: SyntheticWorldConfig | None = None) -> Path:
    """Write the synthetic dataset to ``out_dir`` and return ``out_dir``: ``images/{train,val,test}/``,
    ``train.json`` / ``val.json`` / ``test.json`` (PPDM/QPIC JSON), ``corre.npy`` (verb x object validity) and
    ``vocabulary.json`` (rare classes from the training counts), and ``world.json`` (the
    config, :func:`world_config_dict`: tells a reused folder's knobs). Read it back with
    :func:`hoi_r1.readers.read_annotations` on ``out_dir / "train.json"``."""
    config = config if config is not None else SyntheticWorldConfig()
    out_dir = Path(out_dir)
    train = generate_split(out_dir, "train", config)
    test = generate_split(out_dir, "test", config)
    val = generate_split(out_dir, "val", config)
    vocab = synthetic_vocabulary(dict(count_pairs(int(c) for s in train for c in s.hoi_ids)))
    write_hico_json(train, vocab, out_dir / "train.json", with_hoi_category=True)
    write_hico_json(test, vocab, out_dir / "test.json", with_hoi_category=False)
    write_hico_json(val, vocab, out_dir / "val.json", with_hoi_category=False)
    write_validity_npy(vocab, out_dir / "corre.npy")
    vocab.to_json(out_dir / "vocabulary.json")
    (out_dir / "world.json").write_text(json.dumps(world_config_dict(config), indent=1) + "\n")
    return out_dir


def world_config_dict(config: SyntheticWorldConfig) -> dict:
    """The config as plain JSON values (what ``world.json`` holds).

    >>> world_config_dict(SyntheticWorldConfig(grid=14))["grid"]
    14
    """
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def parse_world_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, SyntheticWorldConfig]:
    """The ``hoi-r1 synth`` command line: its arguments and the world config they ask for.

    >>> args, config = parse_world_args(["--out", "w", "--grid", "14"])
    >>> args.out, config.grid, config.num_train
    ('w', 14, 2000)
    """
    d = SyntheticWorldConfig()
    parser = argparse.ArgumentParser(prog="hoi-r1 synth", description="Generate the synthetic HOI world.")
    parser.add_argument("--out", default="data/synthetic", help="output folder (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=d.num_train, help="training images (default: %(default)s)")
    parser.add_argument("--num-test", type=int, default=d.num_test, help="test images (default: %(default)s)")
    parser.add_argument("--num-val", type=int, default=d.num_val, help="validation images (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=d.image_size, help="image width (default: %(default)s)")
    parser.add_argument("--image-height", type=int, default=None, help="image height (default: square)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--grid", type=int, default=d.grid, help="snap boxes to this many pixels; 1 = off")
    parser.add_argument("--min-people", type=int, default=d.min_people)
    parser.add_argument("--max-people", type=int, default=d.max_people)
    parser.add_argument("--min-objects", type=int, default=d.min_objects)
    parser.add_argument("--max-objects", type=int, default=d.max_objects)
    parser.add_argument("--backgrounds", nargs="+", default=list(d.backgrounds), choices=["flat", "noise", "gradient", "ramp"])
    parser.add_argument("--no-occlusion", action="store_true", help="no overlapping people or objects")
    parser.add_argument("--max-occlusion", type=float, default=d.max_occlusion)
    parser.add_argument("--zero-shot-holdout", action="store_true", help="no unseen_composition class in train")
    parser.add_argument("--image-format", choices=["png", "jpg"], default=d.image_format)
    args = parser.parse_args(argv)
    try:
        config = SyntheticWorldConfig(
            image_size=args.image_size, image_height=args.image_height, min_people=args.min_people,
            max_people=args.max_people, min_objects=args.min_objects, max_objects=args.max_objects,
            grid=args.grid, backgrounds=tuple(args.backgrounds), occlusion=not args.no_occlusion,
            max_occlusion=args.max_occlusion, num_train=args.num_train, num_test=args.num_test, num_val=args.num_val,
            seed=args.seed, zero_shot_holdout=args.zero_shot_holdout, image_format=args.image_format,
        )
    except ValueError as e:
        parser.error(str(e))
    return args, config


def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 synth``: generate the synthetic world from the command line."""
    args, config = parse_world_args(argv)
    start = time.perf_counter()
    out = generate_world(args.out, config)
    print(f"wrote {config.num_train} train + {config.num_val} val + {config.num_test} test images to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
