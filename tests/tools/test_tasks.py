"""Success checks of sandbox tasks: answer words, state matches and absences, the finished rule."""

from __future__ import annotations

import pytest

from tl_lightning.data.schema import ToolCall
from tl_lightning.tools.sandbox import Sandbox
from tl_lightning.tools.tasks import check_success


@pytest.fixture()
def sb() -> Sandbox:
    sb = Sandbox(["todo", "files"], timeout_s=None)
    sb.execute(ToolCall("add_task", {"title": "pay rent"}))
    sb.execute(ToolCall("write_file", {"path": "/a.txt", "content": "hi"}))
    return sb


def test_check_success_conditions(sb):
    meta = {"success": {"finished": True, "all": [
        {"type": "answer_contains", "values": ["Rent"]},
        {"type": "state_match", "toolkit": "todo", "key": "tasks", "where": {"title": "pay rent", "done": False}},
        {"type": "state_match", "toolkit": "files", "key": "files", "where": {"/a.txt": "hi"}},
        {"type": "state_absent", "toolkit": "todo", "key": "tasks", "where": {"title": "x"}},
    ]}}
    assert check_success(meta, sb, "Added: pay rent.")
    assert not check_success(meta, sb, None)
    assert not check_success(meta, sb, "Done.")
    sb.execute(ToolCall("complete_task", {"task_id": 1}))
    assert not check_success(meta, sb, "Added: pay rent.")
    with pytest.raises(ValueError, match="no success condition"):
        check_success({}, sb, "x")


@pytest.mark.parametrize(
    ("answer", "value", "ok"),
    [("It costs 112.87 EUR.", "12.8", False), ("It costs 12.8 EUR.", "12.8", True), ("I cannot.", "no", False),
     ("No, it is closed.", "no", True)],
)
def test_answer_values_are_whole_words(sb, answer, value, ok):
    meta = {"success": {"all": [{"type": "answer_contains", "values": [value]}]}}
    assert check_success(meta, sb, answer) is ok


def test_finished_false_accepts_no_answer_and_unknown_types_are_errors(sb):
    meta = {"success": {"finished": False, "all": [
        {"type": "state_absent", "toolkit": "todo", "key": "tasks", "where": {"title": "buy milk"}}]}}
    assert check_success(meta, sb, None)
    sb.execute(ToolCall("add_task", {"title": "buy milk"}))
    assert not check_success(meta, sb, None)
    with pytest.raises(ValueError, match="unknown success condition type 'regex'"):
        check_success({"success": {"all": [{"type": "regex"}]}}, sb, "x")
