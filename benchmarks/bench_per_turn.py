"""Token cost of the per-turn rendering strategy against one pass, for every stock family template.

    python benchmarks/bench_per_turn.py                  # 300 quick-start training trajectories
    python benchmarks/bench_per_turn.py --n 1217         # all of them

A chat template that re-renders earlier turns (Qwen3's ``<think>`` blocks, Mistral's system prompt, Hermes-2-Pro's
tool replies) cannot train every turn in one sequence: ``strategy: auto`` encodes each turn against the context
the template gives it at generation time, sharing a sequence between turns whenever the later context extends
it (:mod:`tl_lightning.data.chat_template`). Per family and data variant this prints, side by side on the same
trajectories, the tokens the model is fed:

- ``one pass``: the template's render of the whole conversation, tokenized once (the least any strategy needs);
- ``auto``: what training encodes (per-turn sequences, merged where the template allows);
- ``per turn``: one sequence per assistant turn, as the official TL-Training code trains (``strategy: per_turn``);

with ``auto / one pass`` the cost of training each turn on its true context, and the supervised tokens (the
same for all three: each turn is supervised exactly once). The tokenizer is ``tl-small`` with each family's
special tokens (``tests/family_helpers.py``, where the fixture templates are described).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from tl_lightning.data.chat_template import ChatTemplate
from tl_lightning.data.paths import resolve_data_path
from tl_lightning.data.readers import read_trajectories
from tl_lightning.data.schema import Trajectory

ROOT = Path(__file__).resolve().parents[1]


def family_helpers():
    """``tests/family_helpers.py``: the fixture templates and their tokens live with the tests (not shipped)."""
    spec = importlib.util.spec_from_file_location("family_helpers", ROOT / "tests" / "family_helpers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def variants(trajs: list[Trajectory]) -> dict[str, list[Trajectory]]:
    """The data as generated; with a system prompt; with a thought on every step; with one on every other step."""
    import copy

    def edit(fn) -> list[Trajectory]:
        out = copy.deepcopy(trajs)
        for t in out:
            fn(t)
        return out

    def system(t: Trajectory) -> None:
        t.system = "You are a helpful assistant."

    def every(t: Trajectory) -> None:
        for step in t.steps:
            step.text = f"I need {step.calls[0].name}."

    def alternate(t: Trajectory) -> None:
        for i, step in enumerate(t.steps):
            step.text = f"I need {step.calls[0].name}." if i % 2 else ""

    return {"plain": trajs, "system prompt": edit(system), "thought every step": edit(every), "thought every other step": edit(alternate)}


def count(trajs: list[Trajectory], tok, template: ChatTemplate, strategy: str) -> tuple[int, int, int]:
    """(tokens, supervised characters' tokens, sequences) of ``trajs`` under ``strategy`` (``one pass`` = full render)."""
    tokens = supervised = sequences = 0
    for traj in trajs:
        if strategy == "one pass":
            msgs, _ = template._messages(traj, include_final=True, tokenizer=tok)
            text = template._apply(tok, msgs, [t.to_openai() for t in traj.tools], False, traj.id)
            tokens += len(tok(text, add_special_tokens=False)["input_ids"])
            sequences += 1
            continue
        t = ChatTemplate(chat_template_kwargs=template.chat_template_kwargs, strategy=strategy)
        for r in t.render_sequences(traj, tok):
            tokens += len(tok(r.text, add_special_tokens=False)["input_ids"])
            supervised += sum(len(tok(r.text[s.start : s.end], add_special_tokens=False)["input_ids"]) for s in r.supervised)
            sequences += 1
    return tokens, supervised, sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="quick-start training trajectories to render")
    parser.add_argument("--families", nargs="*", default=None, help="fixture families (default: all)")
    args = parser.parse_args()
    helpers = family_helpers()
    trajs = list(read_trajectories(resolve_data_path("quickstart")))[: args.n]
    print(f"{len(trajs)} quick-start trajectories, {sum(len(t.steps) for t in trajs)} steps; tokenizer tl-small + family tokens\n")
    print(f"{'family':<15} {'data':<25} {'one pass':>9} {'auto':>9} {'per turn':>9} {'auto/1':>7} {'turn/1':>7} {'seq/traj':>8} {'sup.':>7}")
    for name in args.families or list(helpers.FAMILIES):
        tok = helpers.family_tokenizer(name)
        template = ChatTemplate(chat_template_kwargs=helpers.TEMPLATE_KWARGS.get(name))
        for label, data in variants(trajs).items():
            if label.startswith("thought") and name not in ("qwen3", "qwen2_5"):
                continue  # only a reasoning template renders thoughts differently by position
            t0 = time.perf_counter()
            one, _, _ = count(data, tok, template, "one pass")
            auto, sup_auto, seq_auto = count(data, tok, template, "auto")
            turn, sup_turn, _ = count(data, tok, template, "per_turn")
            assert sup_auto == sup_turn, "each turn is supervised once under both strategies"
            print(f"{name:<15} {label:<25} {one:>9} {auto:>9} {turn:>9} {auto / one:>7.2f} {turn / one:>7.2f} "
                  f"{seq_auto / len(data):>8.2f} {sup_auto:>7}   ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
