"""The synthetic HOI world, the embedded default data of the demo and the tests (``docs/synthetic.md``),
and the demo that runs the whole recipe on it (``docs/demo.md``).

Imports run one way, ``scene`` ← ``relations`` ← ``scene_sampler`` ← ``world`` ← ``demo`` ←
``demo_base`` (and ``scene`` ← ``render`` ← ``world``):

* :mod:`hoi_r1.synthetic.scene` — the world's knobs (:class:`~hoi_r1.synthetic.scene.SyntheticWorldConfig`),
  what a scene holds and the vocabulary;
* :mod:`hoi_r1.synthetic.relations` — the relation rules that decide a pair's verb from its boxes;
* :mod:`hoi_r1.synthetic.scene_sampler` — the sampler of unambiguous scenes (pure numpy);
* :mod:`hoi_r1.synthetic.render` — drawing a scene with PIL;
* :mod:`hoi_r1.synthetic.world` — a world written to disk as a HICO-DET-format dataset
  (``hoi-r1 synth``);
* :mod:`hoi_r1.synthetic.demo` — ``make demo``: base → SFT → GRPO on the synthetic world;
* :mod:`hoi_r1.synthetic.demo_base` — ``make demo-base``: the grounding-pretrained tiny base
  model the demo starts from.

The tiny Qwen2.5-VL itself is :mod:`hoi_r1.tiny` (the model of every test, not only of this world).
"""
