"""The demo's plumbing: a reused world folder must be the world the demo asks for."""

import json

from hoi_r1.demo import _world_matches
from hoi_r1.readers.synthetic import main as synth


def test_a_world_is_reused_only_with_the_same_knobs(tmp_path):
    out = tmp_path / "world"
    args = ["--out", str(out), "--num-train", "3", "--num-test", "2", "--grid", "14", "--backgrounds", "ramp"]
    assert not _world_matches(out, args)  # nothing there yet
    synth(args)
    assert _world_matches(out, args)
    assert json.loads((out / "world.json").read_text())["backgrounds"] == ["ramp"]
    assert not _world_matches(out, [*args[:-1], "flat"])  # another background
    assert not _world_matches(out, [*args, "--seed", "1"])  # another seed
    (out / "world.json").unlink()  # a world written before world.json existed: made again
    assert not _world_matches(out, args)
