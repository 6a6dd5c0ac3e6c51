"""An experimental copy-dense corpus: does in-context copying form faster when copying is the only way to lower the loss?

    python results/2026-11-30/base_model/copy_corpus.py --out data/pretrain_copy --n 20000 --repeat-share 0.3

- (1 - repeat_share) of the documents are the pretraining corpus's episodes rendered in ``python_sig`` only, the
  most compact format: shorter tool lists, so more copy events (tool names, argument values) per token.
- repeat_share of them are spans of random made-up words and numbers repeated 2-4 times, the classic setting in
  which induction heads form: after the first copy, every next token is predictable from the context alone.

Same jsonl layout as ``python -m tl_lightning.synthetic.pretrain`` (``scripts/pretrain_base.py`` reads it); the
held-out file is the standard corpus's ``val.jsonl``, so held-out losses and the copy probe stay comparable.
"""

import argparse
import json
import random
import shutil
from pathlib import Path

from tl_lightning.synthetic.pretrain.corpus import _Renderer
from tl_lightning.synthetic.pretrain.episodes import build_episode

SYLLABLES = ("ka", "lo", "mir", "ven", "tas", "qui", "lu", "dor", "sel", "ban", "ri", "zel", "to", "mar", "po", "nes",
             "fi", "gra", "hul", "ek", "sa", "vo", "run", "del", "ca", "ti", "wen", "os")


def word(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return str(rng.randint(0, 10 ** rng.randint(1, 6)))
    w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
    return w.capitalize() if rng.random() < 0.3 else w


def repeat_doc(rng: random.Random) -> str:
    span = " ".join(word(rng) for _ in range(rng.randint(6, 30)))
    sep = rng.choice(("\n", " | ", ". ", "\n\n"))
    return sep.join([span] * rng.randint(2, 4))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeat-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--val-from", type=Path, default=Path("data/pretrain/val.jsonl"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    render = _Renderer()
    with open(args.out / "train.jsonl", "w") as f:
        for i in range(args.n):
            rng = random.Random(f"copy:{args.seed}:{i}")
            if rng.random() < args.repeat_share:
                doc = {"id": f"rep-{i:07d}", "format": "repeat", "text": repeat_doc(rng)}
            else:
                traj = build_episode(rng, f"pt-copy-{i:07d}", with_thoughts=False)
                doc = {"id": traj.id, "format": "python_sig", "text": render(traj, "python_sig")}
            f.write(json.dumps(doc) + "\n")
    shutil.copy(args.val_from, args.out / "val.jsonl")
    print(f"wrote {args.n} documents to {args.out}")


if __name__ == "__main__":
    main()
