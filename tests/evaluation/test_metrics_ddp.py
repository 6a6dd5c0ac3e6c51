"""ToolCallAccuracy and MultiTurnErrorRates sync across 2 CPU processes (gloo) to the 1-process numbers."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import Message, Tool, ToolCall
from tl_lightning.evaluation.metrics import MultiTurnErrorRates, ToolCallAccuracy
from tl_lightning.evaluation.multiturn import FORMAT_ERROR, EpisodeResult, TurnRecord

pytestmark = pytest.mark.slow

TOOLS = [Tool("f", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})]


def _cases_and_preds():
    cases, preds = [], []
    # 6 cases over 2 scenarios; predictions: right, wrong value, wrong tool, in turn
    for i in range(6):
        cases.append(EvalCase(str(i), i, TOOLS, [Message("user", "q")], [[ToolCall("f", {"a": i})]], scenario="AB"[i % 2]))
        preds.append([[ToolCall("f", {"a": i})], [ToolCall("f", {"a": -1})], [ToolCall("g", {"a": i})]][i % 3])
    return cases, preds


def _episode(categories: list[str], finished: bool) -> EpisodeResult:
    return EpisodeResult("t", 0, "", [TurnRecord(output="", categories=categories)], finished=finished)


# (calls, DE, CE): (3, 1, 0), (2, 0, 2), (4, 1, 1), (1, 0, 0)
RECORDS = [
    _episode(["tool_hallucination", "all_right", "all_right"], True),
    _episode([FORMAT_ERROR, "tool_call_failure"], False),
    _episode(["parameter_missing", "others", "all_right", "all_right"], True),
    _episode(["all_right"], False),
]


def _single_process() -> tuple[dict, dict]:
    cases, preds = _cases_and_preds()
    acc = ToolCallAccuracy(mode="corrected", scenarios=["A", "B"])
    acc.update(preds, cases)
    rates = MultiTurnErrorRates()
    rates.update(RECORDS)
    return {k: v.item() for k, v in acc.compute().items()}, {k: v.item() for k, v in rates.compute().items()}


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cases, preds = _cases_and_preds()
        # uneven shards: rank 0 gets 4 cases, rank 1 gets 2
        lo, hi = (0, 4) if rank == 0 else (4, 6)
        acc = ToolCallAccuracy(mode="corrected", scenarios=["A", "B"])
        acc.update(preds[lo:hi], cases[lo:hi])
        rates = MultiTurnErrorRates()
        rates.update(RECORDS[rank::world])
        queue.put((rank, {k: v.item() for k, v in acc.compute().items()}, {k: v.item() for k, v in rates.compute().items()}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(90)
@pytest.mark.multiprocess
def test_metrics_sync_across_two_processes():
    expected_acc, expected_rates = _single_process()
    assert (expected_acc["TS"], expected_acc["PI"], expected_acc["CF"]) == pytest.approx((200 / 3, 200 / 3, 100 / 3))
    assert (expected_rates["DE"], expected_rates["CE"], expected_rates["VA"]) == pytest.approx((20.0, 30.0, 50.0))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_worker, args=(2, _free_port(), queue), nprocs=2, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=30) for _ in range(2))
    for _, acc, rates in results:
        assert acc == pytest.approx(expected_acc, nan_ok=True)
        assert rates == pytest.approx(expected_rates)
