import pytest

from tl_lightning.data import FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory


def _traj(**kw):
    base = dict(
        id="t0",
        tools=[Tool("get_x", "d", {"type": "object", "properties": {"a": {"type": "string"}}}, ["a"])],
        messages=[Message("user", "hi")],
        steps=[Step([ToolCall("get_x", {"a": "1"})], feedback=["ok"], category="all_right")],
        final_answer="done",
    )
    base.update(kw)
    return Trajectory(**base)


def test_valid_trajectory_roundtrips_openai_spec():
    t = _traj()
    assert t.steps[0].category is FeedbackCategory.ALL_RIGHT
    assert not t.steps[0].is_error
    spec = t.tools[0].to_openai()
    assert Tool.from_openai(spec) == t.tools[0]
    assert t.query == "hi"
    assert not t.is_empty and _traj(steps=[], final_answer=None).is_empty


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(messages=[Message("system", "s")]), "no user message"),
        (dict(tools=[Tool("a"), Tool("a")]), "duplicate tool names"),
    ],
)
def test_invalid_trajectories_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _traj(**kw)


def test_step_validation():
    with pytest.raises(ValueError, match="at least one tool call"):
        Step([])
    with pytest.raises(ValueError, match="feedback"):
        Step([ToolCall("f")], feedback=["a", "b"])
    with pytest.raises(ValueError, match="arguments must be a dict"):
        ToolCall("f", arguments=[1])
    assert Step([ToolCall("f")], feedback=["x"], category="tool_hallucination").is_error
