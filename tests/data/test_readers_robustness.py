"""Hostile and careless input to the training readers: every failure inside a record is a
TrajectoryFormatError naming file, record and problem; lenient mode skips it and reads the rest;
files are decoded by their byte-order mark or refused with one line naming the byte offset."""

from __future__ import annotations

import json

import pytest

from tl_lightning.data import TrajectoryFormatError, read_trajectories

GOOD = {
    "id": "good",
    "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ],
    "messages": [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c0", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "ok"},
        {"role": "assistant", "content": "done"},
    ],
}
DEEP = "[" * 100_000 + "]" * 100_000


def _with(**changes) -> dict:
    rec = json.loads(json.dumps(GOOD))
    rec.update(changes)
    return rec


def _bad_record(kind: str) -> str:
    """One JSON record (text) with the problem ``kind``."""
    if kind == "deep record":
        return '{"id": "deep", "messages": ' + DEEP + "}"
    if kind == "huge int":
        return json.dumps(_with(id="huge"))[:-1] + ', "n": ' + "9" * 5000 + "}"
    if kind == "meta list":
        return json.dumps(_with(id="meta", meta=[1, 2]))
    rec = _with(id=kind)
    if kind == "nested arguments":
        rec["messages"][1]["tool_calls"][0]["function"]["arguments"] = DEEP
    else:  # "required str"
        rec["tools"][0]["function"]["parameters"]["required"] = "symbol"
    return json.dumps(rec)


@pytest.mark.parametrize("layout", ["jsonl", "json"])
@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("deep record", "invalid JSON: nested too deeply to decode (RecursionError)"),
        ("nested arguments", "malformed JSON arguments: messages[1].tool_calls[0]: nested too deeply"),
        ("huge int", "invalid JSON: Exceeds the limit (4300 digits)"),
        ("meta list", "malformed record: 'meta' must be an object, got list"),
        ("required str", "tools not parseable: tools[0]: tool 'f': required must be a list"),
    ],
)
def test_bad_record_is_named_and_skipped(tmp_path, layout, kind, problem):
    records = [json.dumps(GOOD), _bad_record(kind), json.dumps(_with(id="last"))]
    path = tmp_path / f"data.{layout}"
    path.write_text("\n".join(records) + "\n" if layout == "jsonl" else "[" + ",\n".join(records) + "]")
    where = f"{path}, line 2" if layout == "jsonl" else f"{path}, index 1"
    res = read_trajectories(path, strict=False)
    assert [t.id for t in res] == ["good", "last"]
    assert (res.report.n_records, res.report.n_skipped) == (3, 1)
    (error,) = res.report.errors
    assert error.startswith(f"{where}: {problem}"), error
    with pytest.raises(TrajectoryFormatError) as err:
        read_trajectories(path)
    assert str(err.value) == error


def test_tool_reply_of_brackets_never_aborts_the_file(tmp_path):
    """``"[" * 100000`` as a tool reply: the feedback classifier tries it as JSON. The record is read
    (the reply kept as text) or named as bad; the file is never aborted by a raw RecursionError."""
    rec = _with(id="brackets")
    rec["messages"][2]["content"] = "[" * 100_000
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (GOOD, rec, _with(id="last"))) + "\n")
    res = read_trajectories(path, strict=False)
    assert [t.id for t in res if t.id != "brackets"] == ["good", "last"]
    if res.report.n_skipped:
        assert res.report.errors == [
            f"{path}, line 2: malformed record: nested too deeply to decode (RecursionError)"
        ]
    else:
        assert res[1].steps[0].feedback == ["[" * 100_000]
    try:
        read_trajectories(path)
    except TrajectoryFormatError as e:
        assert "line 2" in str(e)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_bom_and_utf16_files_are_read(tmp_path, encoding):
    records = [_with(id=f"r{i}", note="café ☕") for i in range(3)]
    array, lines = tmp_path / "a.json", tmp_path / "l.jsonl"
    array.write_bytes(json.dumps(records, ensure_ascii=False).encode(encoding))
    lines.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(encoding))
    for path in (array, lines):
        res = read_trajectories(path)
        assert [t.id for t in res] == ["r0", "r1", "r2"] and res.report.n_skipped == 0
        assert res[0].meta["note"] == "café ☕"


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b'{"id": "a", "messages": []}\n{"id": "\xff"}\n', 36),  # one stray byte
        ('[{"id": "café"}]'.encode("latin-1"), 12),  # a latin-1 file
    ],
)
def test_undecodable_file_is_one_line_with_byte_offset(tmp_path, data, offset):
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    for strict in (True, False):
        with pytest.raises(TrajectoryFormatError) as err:
            read_trajectories(path, strict=strict)
        message = str(err.value)
        assert "\n" not in message and str(path) in message and f"byte offset {offset}" in message
