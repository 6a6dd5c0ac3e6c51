"""The quick-start data set: synthetic tool-use trajectories executed in the sandbox.

    python -m tl_lightning.synthetic                       # generate the quick-start set into the cache
    python -m tl_lightning.synthetic --out data/big --n-train 20000 --seed 1

:func:`ensure_quickstart_data` is what the CLI, ``score`` and the tests call before anything reads a
``quickstart`` path (:func:`tl_lightning.data.paths.resolve_data_path` only finds the files).
"""

from tl_lightning.synthetic.generator import ensure_quickstart_data, generate

__all__ = ["ensure_quickstart_data", "generate"]
