"""Shared fixtures. Everything here is built offline, in memory or under tmp_path."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

# Tests must not write outside the work tree or reach the network.
_TMP = Path(tempfile.mkdtemp(prefix="tl_lightning_tests_"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_DIR", str(_TMP / "wandb"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TL_LIGHTNING_CACHE", str(_TMP / "cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One xdist worker per core: each worker (and the processes its tests start) computes on one thread, instead
    # of two workers' thread pools fighting over both cores. Set before torch is imported, which reads it once.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


_CORPUS = [
    'System: Function:\ndef get_weather_forecast(city: str, days: int = None):\n    """\n    Forecast.\n    """',
    'User: What is the weather in Paris?\nAssistant: get_weather_forecast(city="Paris", days=3)</s>',
    'Output: {"city": "Paris", "forecast": [21.5, 19.0]}\nAssistant: finish(answer="Sunny, 21 degrees")</s>',
    'Thought: I need the stock price.\nAction: get_stock_price\nAction Input: {"symbol": "AAPL"}',
    'get_weather_history(city="Rome", date="2024-01-02") search_flights search_hotels convert_units',
    '{"name": "get_stock_price", "arguments": {"symbol": "MSFT"}} <tool_call> </tool_call> error',
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist (``--dist loadgroup``): one group per test file, so a file's tests share one worker and its
    module fixtures are built once; and one group for every ``multiprocess`` test, so two multi-process runs
    never compete for the two cores at once (their timeouts assume at most one other test beside them)."""
    if not getattr(config.option, "loadgroup", False):  # what an xdist worker is told for --dist loadgroup
        return
    for item in items:
        group = "multiprocess" if item.get_closest_marker("multiprocess") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE fast tokenizer (offsets supported) trained on a few tool-use lines.

    Special tokens: ``<s>``, ``</s>`` (eos), ``<pad>``, ``<unk>``, plus ``<|im_start|>`` and
    ``<|im_end|>`` for chat-template tests.
    """
    from tl_lightning.tokenization import train_bpe_tokenizer

    return train_bpe_tokenizer(_CORPUS * 20, vocab_size=512, extra_special_tokens=["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The public test sets: ``$TL_LIGHTNING_BENCHMARKS``, else ``shared/benchmarks`` beside the repository."""
    from tl_lightning.benchmarks import benchmarks_root

    root = benchmarks_root()
    if not root.is_dir():
        pytest.skip(f"public benchmarks not found at {root}; set TL_LIGHTNING_BENCHMARKS to your copy")
    return root


@pytest.fixture(scope="session", autouse=True)
def quickstart_data() -> Path:
    """The quick-start set, generated once into this session's cache: ``quickstart`` paths resolve to it."""
    from tl_lightning.synthetic import ensure_quickstart_data

    return ensure_quickstart_data()


@pytest.fixture
def small_data(tmp_path) -> tuple[Path, Path]:
    """The first 16 training and 4 validation trajectories of the quick-start set: (train.jsonl, val.jsonl)."""
    from tl_lightning.data.paths import resolve_data_path

    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(resolve_data_path("quickstart").read_text().splitlines(keepends=True)[:16]))
    val.write_text("".join(resolve_data_path("quickstart:val").read_text().splitlines(keepends=True)[:4]))
    return train, val


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is faster than two fighting over shared cores (and makes runs reproducible)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pretrain_script():
    """``scripts/pretrain_base.py`` as a module (a script, not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_base.py"
    spec = importlib.util.spec_from_file_location("pretrain_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
