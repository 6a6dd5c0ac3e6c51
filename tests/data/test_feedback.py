"""The feedback classifier: the official substrings, structured errors, realistic messages, overrides."""

from __future__ import annotations

import pytest

from tl_lightning.data import FeedbackCategory as C
from tl_lightning.data import FeedbackClassifier, classify_feedback, step_category
from tl_lightning.data.feedback import FeedbackRule, default_classifier, normalize_feedback

# At least two realistic messages per category (docs/method.md#feedback-categories examples first, then sandbox-style ones).
REALISTIC = {
    C.ALL_RIGHT: [
        '{"slip": {"id": 52, "advice": "Don\'t be afraid to make mistakes."}}',
        '{"city": "Paris", "forecast": [21.5, 19.0], "error_rate": 0.02, "errors": 0}',
        '{"status": "ok", "errors": []}',
        '{"error": null, "result": {"temp": 21}}',
        '{"success": true, "message": "Email sent to bob@example.com"}',
        "[]",
        "The alarm is set for 07:00.",
        "",
    ],
    C.TOOL_INSTABILITY: [
        "HTTPSConnectionPool(host='api.weatherapi.com', port=443): Max retries exceeded with url: /v1/forecast.json "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a "
        "new connection: [Errno -3] Temporary failure in name resolution'))",
        "ConnectionError: HTTPSConnectionPool(host='api.x.com', port=443): Max retries exceeded with url: /v1 (Caused by ...)",
        "400 Client Error: Bad Request for url: https://newsapi.org/v2/top-headlines?country=zz",
        "Invalid API call",
        '{"error": "Connection error: the upstream service did not answer"}',
        "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.x.com', port=443): Read timed out. (read timeout=10)",
        "TimeoutError: tool execution exceeded 1.0 s",
    ],
    C.TOOL_CALL_FAILURE: [
        "'<=' not supported between instances of 'str' and 'int'",
        "Object of type bytes is not JSON serializable",
        '{"error": "Response error."}',
        "slice indices must be integers or None or have an __index__ method",
        "ValueError: time data '2024/01/02' does not match format '%Y-%m-%d'",
        "KeyError: 'EURO'",
        "{'error': 'Response error.'}",
    ],
    C.TOOL_HALLUCINATION: [
        "name google_search is not defined",
        "name 'google_search' is not defined",
        "NameError: name 'get_wether' is not defined",
        '{"error": "Unknown tool: search_flights_v2"}',
    ],
    C.PARAMETER_HALLUCINATION: [
        "get_news_headlines() got an unexpected keyword argument 'sortBy'",
        "TypeError: convert_units() got an unexpected keyword argument 'precision'",
        '{"error": "Unknown parameter \'units\' for get_weather_forecast"}',
        "TypeError: get_stock_price() takes 1 positional argument but 2 were given",
    ],
    C.PARAMETER_MISSING: [
        "forecast() missing 1 required positional argument: 'aqi'",
        "TypeError: search_hotels() missing 2 required positional arguments: 'city' and 'checkin'",
        '{"status": "error", "message": "Missing required parameter: city"}',
        "get_weather_history() missing 1 required keyword-only argument: 'date'",
    ],
    C.OTHERS: [
        '{"error": "Recently completed scan for example.com not found"}',
        '{"error": {"code": 404, "message": "No such city"}}',
        "Error: no flights between PAR and PAR",
        '{"success": false}',
        'Traceback (most recent call last):\n  File "tool.py", line 3, in run\nRuntimeError: database is locked',
        "LookupError: unknown encoding: utf-9",
    ],
}


@pytest.mark.parametrize(
    ("category", "text"), [(cat, text) for cat, texts in REALISTIC.items() for text in texts]
)
def test_realistic_messages(category, text):
    assert classify_feedback(text) is category


def test_every_category_has_two_examples():
    assert set(REALISTIC) == set(C)
    assert all(len(v) >= 2 for v in REALISTIC.values())


# Every official substring of docs/method.md#feedback-categories, each embedded in some surrounding text, with its category.
OFFICIAL = [
    ("is not defined", C.TOOL_HALLUCINATION),
    ("positional argument", C.PARAMETER_MISSING),
    ("unexpected keyword", C.PARAMETER_HALLUCINATION),
    ("ConnectionError", C.TOOL_INSTABILITY),
    ("connection error", C.TOOL_INSTABILITY),
    ('"error":', C.OTHERS),
    ("'error'", C.OTHERS),
    ("not supported", C.TOOL_CALL_FAILURE),
    ("Invalid API call", C.TOOL_INSTABILITY),
    ("Response error", C.TOOL_CALL_FAILURE),
    ("Object of type set is not JSON serializable", C.TOOL_CALL_FAILURE),
    ("400 Client Error", C.TOOL_INSTABILITY),
    ("slice indices must be integers", C.TOOL_CALL_FAILURE),
    ("Max retries", C.TOOL_INSTABILITY),
]


@pytest.mark.parametrize(("pattern", "category"), OFFICIAL)
def test_official_substrings(pattern, category):
    assert classify_feedback(f"tool run: {pattern} (details)") is category


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # official normalisation: case, spaces and punctuation do not matter for official substrings
        ("Name   'X'  IS NOT-DEFINED", C.TOOL_HALLUCINATION),
        ("CONNECTION_ERROR while fetching", C.TOOL_INSTABILITY),
        ("invalid-api-call", C.TOOL_INSTABILITY),
        # a JSON error is judged by its message, then falls back to others
        ('{"error": "Invalid API call"}', C.TOOL_INSTABILITY),
        ('{"error": "name \'x\' is not defined"}', C.TOOL_HALLUCINATION),
        ('{"error": "Recently completed scan for ... not found"}', C.OTHERS),
        ('{"errors": ["Invalid date"]}', C.OTHERS),
        (
            '{"error": true, "message": "get_x() got an unexpected keyword argument \'y\'"}',
            C.PARAMETER_HALLUCINATION,
        ),
        # a JSON-encoded string is judged as the string
        ('"400 Client Error: Bad Request"', C.TOOL_INSTABILITY),
        # truncated JSON that did not parse still carries the official '"error":' pattern
        ('{"error": "scan failed", "id": ', C.OTHERS),
    ],
)
def test_structured_and_normalised(text, category):
    assert classify_feedback(text) is category


@pytest.mark.parametrize(
    "text",
    [
        '{"status": "ok", "errors": []}',
        '{"error_rate": 0.1, "errors": 0, "connection_errors": 0}',
        '{"report": "0 connection errors, Max retries setting is 3", "error": ""}',
        '{"status": "completed", "note": "name is not defined in the record"}',
        '[{"error": "field in a result list"}]',
        '{"error": false}',
        "error_rate: 0.1",  # plain text, no quoted "error" key
    ],
)
def test_success_payloads_are_all_right(text):
    """A JSON object is an error only when a key says so; words inside its values do not count."""
    assert classify_feedback(text) is C.ALL_RIGHT


def test_explain_names_the_rule():
    clf = default_classifier()
    m = clf.explain('{"error": "Response error."}')
    assert (m.category, m.rule, m.message) == (C.TOOL_CALL_FAILURE, "call_failure", "Response error.")
    assert clf.explain('{"error": "scan not found"}').rule == "structured"
    assert clf.explain("ok").rule == "none"


def test_normalize_feedback():
    assert (
        normalize_feedback("Object of type 'bytes' is NOT JSON-serializable!")
        == "objectoftypebytesisnotjsonserializable"
    )


def test_step_category_first_error_wins():
    assert step_category(['{"temp": 1}', "Invalid API call", "name 'f' is not defined"]) is C.TOOL_INSTABILITY
    assert step_category(['{"temp": 1}', "{}"]) is C.ALL_RIGHT
    assert step_category([]) is None
    with pytest.raises(TypeError):
        step_category("Invalid API call")


def test_yaml_extends_default(tmp_path):
    path = tmp_path / "patterns.yaml"
    path.write_text(
        "extends: default\n"
        "structured:\n  fallback_category: tool_call_failure\n"
        "rules:\n"
        "  - name: quota\n    category: tool_instability\n    regexes: ['quota (exceeded|reached)']\n"
        "  - category: tool_hallucination\n    substrings: ['Unexpected keyword']\n"
    )
    clf = FeedbackClassifier.from_yaml(path)
    assert classify_feedback("Daily quota exceeded", clf) is C.TOOL_INSTABILITY
    assert classify_feedback("Daily quota exceeded") is C.ALL_RIGHT
    # prepended rules win over the defaults
    assert classify_feedback("f() got an unexpected keyword argument 'x'", clf) is C.TOOL_HALLUCINATION
    # defaults still apply after them, and the structured fallback was overridden
    assert classify_feedback("400 Client Error", clf) is C.TOOL_INSTABILITY
    assert classify_feedback('{"error": "scan not found"}', clf) is C.TOOL_CALL_FAILURE


def test_yaml_replaces_default(tmp_path):
    path = tmp_path / "patterns.yaml"
    path.write_text("rules:\n  - category: others\n    substrings: ['boom']\n")
    clf = FeedbackClassifier.from_yaml(path)
    assert len(clf.rules) == 1
    assert classify_feedback("BOOM!", clf) is C.OTHERS
    assert classify_feedback("400 Client Error", clf) is C.ALL_RIGHT  # no default rules any more
    assert classify_feedback('{"error": "x"}', clf) is C.OTHERS  # structured defaults still apply


def test_with_rules_and_bad_specs(tmp_path):
    clf = default_classifier().with_rules([{"category": "others", "regexes": ["^Invalid API call$"]}])
    assert classify_feedback("Invalid API call", clf) is C.OTHERS
    with pytest.raises(ValueError, match="unknown keys"):
        FeedbackClassifier.from_dict({"rules": [{"category": "others", "substring": ["x"]}]})
    with pytest.raises(ValueError, match="not a valid FeedbackCategory|is not a valid"):
        FeedbackClassifier.from_dict({"rules": [{"category": "oops", "substrings": ["x"]}]})
    with pytest.raises(ValueError, match="bad regex"):
        FeedbackRule(category=C.OTHERS, regexes=("(",))
    with pytest.raises(ValueError, match="no letters or digits"):
        FeedbackRule(category=C.OTHERS, substrings=("::",))
    bad = tmp_path / "bad.yaml"
    bad.write_text("structured:\n  fallback_category: all_right\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        FeedbackClassifier.from_yaml(bad)


def test_default_yaml_covers_every_error_category():
    cats = {r.category for r in default_classifier().rules}
    assert cats == {c for c in C if c.is_error}


def test_a_numeric_status_is_not_read_as_an_error():
    # feedback_patterns.yaml documents this: only the listed string statuses mark a structured error.
    assert classify_feedback('{"status": 404, "items": []}') is C.ALL_RIGHT
    assert classify_feedback('{"status": 404, "error": "Not found"}') is C.OTHERS
    assert classify_feedback('{"status": "fail", "message": "Invalid API call"}') is C.TOOL_INSTABILITY


def test_resolved_category_and_step_is_error():
    from tl_lightning.data.feedback import resolved_category, step_is_error
    from tl_lightning.data.schema import Step, ToolCall

    call = [ToolCall("f", {})]
    unclassified = Step(call, feedback=["f() missing 1 required positional argument: 'x'"])
    assert resolved_category(unclassified) is C.PARAMETER_MISSING and step_is_error(unclassified)
    assert not step_is_error(unclassified, frozenset({C.TOOL_HALLUCINATION}))
    assert step_is_error(unclassified, frozenset({C.PARAMETER_MISSING}))
    # a category the step carries wins over its feedback text
    labelled = Step(call, feedback=["name 'g' is not defined"], category=C.ALL_RIGHT)
    assert resolved_category(labelled) is C.ALL_RIGHT and not step_is_error(labelled)
    pending = Step(call)  # not executed yet
    assert resolved_category(pending) is None and not step_is_error(pending)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_replies_are_text_not_a_crash(text):
    # Deeper than the JSON decoder recurses: judged as text (no error words: all_right), never RecursionError.
    assert classify_feedback(text) is C.ALL_RIGHT
