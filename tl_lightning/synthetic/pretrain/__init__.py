"""The pretraining corpus of the base model: tool use over procedurally generated APIs (never the sandbox's).

    python -m tl_lightning.synthetic.pretrain --out data/pretrain --seed 0 --n 20000

:mod:`~.apis` draws tool families, :mod:`~.values` fresh argument values, :mod:`~.episodes` builds one
trajectory, :mod:`~.corpus` renders it in one of the package's prompt formats and writes the files.
"""

from tl_lightning.synthetic.pretrain.corpus import FORMATS, documents, render, write_corpus
from tl_lightning.synthetic.pretrain.episodes import build_episode

__all__ = ["FORMATS", "build_episode", "documents", "render", "write_corpus"]
