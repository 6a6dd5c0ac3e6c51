"""IRM reward: one test per row of the table in docs/method.md#the-irm-reward, in its order, plus configuration and multi-call rules."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tl_lightning.data.calls import ParseResult, parse_calls
from tl_lightning.data.schema import FeedbackCategory, Tool, ToolCall
from tl_lightning.rewards import (
    IRM_DEFAULTS,
    SANDBOX_REWARDS,
    IRMValues,
    RewardCategory,
    category_reward,
    tool_call_reward,
)

TOOLS = [
    Tool(
        "get_weather",
        parameters={"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "units": {"type": "string"}}},
        required=("city",),
    ),
    Tool("get_news", parameters={"type": "object", "properties": {"topic": {"type": "string"}}}),
]
GOLD = [ToolCall("get_weather", {"city": "Paris", "days": 3})]


def reward(**args):
    return tool_call_reward([ToolCall("get_weather", args)], GOLD, TOOLS)


# --------------------------------------------------------------------------- one test per table row


def test_row1_unparseable_output():
    assert tool_call_reward(ParseResult(error="python: invalid syntax"), GOLD, TOOLS) == (-2.0, RewardCategory.UNPARSEABLE)
    assert tool_call_reward(parse_calls("I don't know"), GOLD, TOOLS) == (-2.0, RewardCategory.UNPARSEABLE)
    assert tool_call_reward([], GOLD, TOOLS) == (-2.0, RewardCategory.UNPARSEABLE)


def test_row1_tool_not_in_tools():
    pred = [ToolCall("google_search", {"city": "Paris", "days": 3})]
    assert tool_call_reward(pred, GOLD, TOOLS) == (-2.0, RewardCategory.TOOL_HALLUCINATION)


def test_row2_real_tool_but_not_gold():
    assert tool_call_reward([ToolCall("get_news", {"topic": "x"})], GOLD, TOOLS) == (-1.5, RewardCategory.WRONG_TOOL)


def test_row3_hallucination_redundancy_and_missing():
    # sortBy not in schema (H), units in schema but not gold (R), days absent (M); values are not looked at.
    assert reward(city="Rome", units="C", sortBy=1) == (-1.8, RewardCategory.HALLUCINATION_REDUNDANCY_MISSING)


def test_row4_hallucination_and_redundancy_or_missing():
    assert reward(city="Paris", days=3, units="C", sortBy=1) == (-1.3, RewardCategory.HALLUCINATION_REDUNDANCY)
    assert reward(city="Paris", sortBy=1) == (-1.3, RewardCategory.HALLUCINATION_MISSING)


def test_row5_redundancy_and_missing():
    assert reward(city="Paris", units="C") == (-1.0, RewardCategory.REDUNDANCY_MISSING)


def test_row6_hallucination_only():
    assert reward(city="Paris", days=3, sortBy=1) == (-0.8, RewardCategory.HALLUCINATION)


def test_row7_redundancy_only_or_missing_only():
    assert reward(city="Paris", days=3, units="C") == (-0.5, RewardCategory.REDUNDANCY)
    assert reward(city="Paris") == (-0.5, RewardCategory.MISSING)


def test_row8_right_names_wrong_values():
    assert reward(city="Rome", days=3) == (-0.25, RewardCategory.WRONG_VALUES)
    assert reward(city="Paris", days="3") == (-0.25, RewardCategory.WRONG_VALUES)  # a string is not the int 3
    assert reward(city="paris", days=3) == (-0.25, RewardCategory.WRONG_VALUES)  # strings compare exactly


def test_row9_fully_correct():
    assert reward(city="Paris", days=3) == (1.0, RewardCategory.CORRECT)
    assert reward(days=3.0, city="Paris") == (1.0, RewardCategory.CORRECT)  # 3 == 3.0, order irrelevant
    assert tool_call_reward(parse_calls('get_weather(city="Paris", days=3)'), GOLD, TOOLS) == (1.0, RewardCategory.CORRECT)


def test_bool_is_not_an_int():
    gold = [ToolCall("get_weather", {"city": "Paris", "days": 1})]
    assert tool_call_reward([ToolCall("get_weather", {"city": "Paris", "days": True})], gold, TOOLS)[1] is RewardCategory.WRONG_VALUES


def test_gold_none_string_matches_any_value():
    gold = [ToolCall("get_weather", {"city": "Paris", "units": "None"})]
    assert tool_call_reward([ToolCall("get_weather", {"city": "Paris", "units": "K"})], gold, TOOLS) == (1.0, RewardCategory.CORRECT)


def test_finish_is_known_even_when_not_listed():
    gold = [ToolCall("finish", {"answer": "sunny"})]
    assert tool_call_reward([ToolCall("finish", {"answer": "sunny"})], gold, TOOLS) == (1.0, RewardCategory.CORRECT)
    assert tool_call_reward([ToolCall("finish", {"answer": "rain"})], gold, TOOLS)[1] is RewardCategory.WRONG_VALUES
    assert tool_call_reward([ToolCall("finish", {"answer": "x"})], GOLD, TOOLS) == (-1.5, RewardCategory.WRONG_TOOL)


# --------------------------------------------------------------------------- configuration


def test_custom_values_and_table_order():
    values = IRMValues.from_dict({"invalid": -3, "wrong_tool": -9.0, "correct": 2})
    assert tool_call_reward([ToolCall("google_search", {})], GOLD, TOOLS, values) == (-3.0, RewardCategory.TOOL_HALLUCINATION)
    assert tool_call_reward([ToolCall("get_news", {})], GOLD, TOOLS, values) == (-9.0, RewardCategory.WRONG_TOOL)
    assert tool_call_reward([GOLD[0]], GOLD, TOOLS, values) == (2.0, RewardCategory.CORRECT)
    assert values.hallucination == -0.8  # untouched rows keep the defaults


def test_values_from_yaml_and_unknown_keys(tmp_path):
    path = tmp_path / "irm.yaml"
    path.write_text("wrong_values: -0.1\ncorrect: 0.5\n")
    values = IRMValues.from_yaml(path)
    assert (values.wrong_values, values.correct, values.invalid) == (-0.1, 0.5, -2.0)
    with pytest.raises(ValueError, match="unknown IRM reward keys \\['typo'\\]"):
        IRMValues.from_dict({"typo": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        IRM_DEFAULTS.correct = 0.0  # type: ignore[misc]


def test_every_category_has_its_row_value():
    expected = {
        "unparseable": -2.0,
        "tool_hallucination": -2.0,
        "wrong_tool": -1.5,
        "param_hallucination_redundancy_missing": -1.8,
        "param_hallucination_redundancy": -1.3,
        "param_hallucination_missing": -1.3,
        "param_redundancy_missing": -1.0,
        "param_hallucination": -0.8,
        "param_redundancy": -0.5,
        "param_missing": -0.5,
        "wrong_values": -0.25,
        "correct": 1.0,
    }
    assert {c.value: IRM_DEFAULTS.of(c) for c in RewardCategory} == expected
    for c in RewardCategory:  # usable as metric / log keys
        assert re.fullmatch(r"[a-z_]+", c.value) and f"{c}" == c.value


# --------------------------------------------------------------------------- several calls


TWO = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_news", {"topic": "ai"})]


def test_multi_call_any_order_is_correct():
    assert tool_call_reward(list(reversed(TWO)), TWO, TOOLS) == (1.0, RewardCategory.CORRECT)


def test_multi_call_earliest_row_wins():
    missing_call = [TWO[0]]
    assert tool_call_reward(missing_call, TWO, TOOLS) == (-1.5, RewardCategory.WRONG_TOOL)
    one_wrong_value = [TWO[0], ToolCall("get_news", {"topic": "sport"})]
    assert tool_call_reward(one_wrong_value, TWO, TOOLS) == (-0.25, RewardCategory.WRONG_VALUES)
    extra_unknown = [*TWO, ToolCall("nope", {})]
    assert tool_call_reward(extra_unknown, TWO, TOOLS) == (-2.0, RewardCategory.TOOL_HALLUCINATION)
    # a wrong tool (-1.5, row 2) outranks a worse-valued later row (-1.8, row 3): the table is checked in order
    mixed = [ToolCall("get_weather", {"units": "C", "x": 1}), ToolCall("get_weather", {"city": "Paris"})]
    assert tool_call_reward(mixed, TWO, TOOLS) == (-1.5, RewardCategory.WRONG_TOOL)


# --------------------------------------------------------------------------- sandbox reward source


def test_category_reward_defaults_and_overrides():
    assert category_reward(FeedbackCategory.ALL_RIGHT) == 1.0
    assert category_reward("parameter_missing") == -0.5
    assert category_reward(None) == -2.0
    assert category_reward(FeedbackCategory.TOOL_INSTABILITY) == 0.0
    assert category_reward("tool_instability", {"tool_instability": -0.1}) == -0.1
    assert set(SANDBOX_REWARDS) == {"unparseable", *(c.value for c in FeedbackCategory)}
    with pytest.raises(ValueError):
        category_reward("bogus")
