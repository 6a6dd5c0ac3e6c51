"""The cache root and the ``quickstart`` path alias: one resolver, which finds files and never generates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tl_lightning.data.paths import (
    LARGE_SPLIT,
    QUICKSTART_SPLITS,
    cache_root,
    quickstart_dir,
    resolve_data_path,
)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert quickstart_dir().parent == tmp_path / "c" and quickstart_dir().name.startswith("quickstart-")
    monkeypatch.delenv("TL_LIGHTNING_CACHE")
    assert cache_root() == Path.home() / ".cache" / "tl_lightning"


def test_other_paths_pass_through():
    assert resolve_data_path("data/x.jsonl") == Path("data/x.jsonl")
    assert resolve_data_path(Path("/a/quickstart.jsonl")) == Path("/a/quickstart.jsonl")
    assert resolve_data_path("quickstart_notes.jsonl") == Path("quickstart_notes.jsonl")  # not the alias


def test_the_alias_names_a_split_of_the_generated_set(quickstart_data):
    assert resolve_data_path("quickstart") == quickstart_data / "train.jsonl"
    for split in QUICKSTART_SPLITS:
        if split == LARGE_SPLIT and not (quickstart_data / f"{split}.jsonl").is_file():
            continue  # generated on demand only (test_synthetic covers it)
        assert resolve_data_path(f"quickstart:{split}") == quickstart_data / f"{split}.jsonl"
        assert resolve_data_path(f"quickstart:{split}").is_file()
    with pytest.raises(ValueError, match="unknown quick-start split 'dev'"):
        resolve_data_path("quickstart:dev")


def test_a_missing_set_says_how_to_generate_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        resolve_data_path("quickstart:val")
    message = str(err.value)
    assert "\n" not in message and "python -m tl_lightning.synthetic" in message and "val.jsonl" in message
    assert list(tmp_path.iterdir()) == []  # finding never generates
