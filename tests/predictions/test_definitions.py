from __future__ import annotations

import pytest

from engine.errors import ConfigError
from predictions.definitions import ChurnPrediction, GoalPrediction, LTVPrediction, parse_predictions

SPEC_EXAMPLE = [
    {"name": "churn_30d", "type": "churn", "event": "Flex - Engagement Initiated", "horizon_days": 30},
    {"name": "ltv_120d", "type": "ltv", "event": "Order Completed", "property": "revenue", "horizon_days": 120},
    {"name": "likely_to_call_7d", "type": "goal", "event": "Flex - Engagement Initiated",
     "conditions": [{"property": "direction", "operator": "equals", "value": "Inbound"}], "horizon_days": 15},
]


def test_spec_example_parses_into_one_class_per_type():
    churn, ltv, goal = parse_predictions(SPEC_EXAMPLE, path="profiles.toml")
    assert isinstance(churn, ChurnPrediction) and churn.task == "classification"
    assert isinstance(ltv, LTVPrediction) and ltv.property == "revenue" and ltv.task == "regression"
    assert isinstance(goal, GoalPrediction) and goal.conditions[0].value == "Inbound"
    assert hash(goal)  # frozen definitions are hashable (condition values too)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"type": "propensity"}, "type", "valid: churn, goal, ltv"),
        ({"horizon_days": 6}, "horizon_days", "7 to 365"),
        ({"horizon_days": 366}, "horizon_days", "7 to 365"),
        ({"horizon_days": "30"}, "horizon_days", "integer"),
        ({"event": ""}, "event", "non-empty"),
        ({"property": "revenue"}, "property", "unknown key"),
        ({"windw": 3}, "windw", "unknown key"),
        ({"conditions": [{"property": "x", "operator": "looks_like", "value": 1}]}, "conditions[0].operator",
         "unknown operator"),
        ({"conditions": [{"property": "x", "operator": "between", "value": [3, 1]}]}, "conditions[0].value",
         "must not be greater than high"),
    ],
)
def test_config_errors_name_file_prediction_and_key(change, key, words):
    table = dict(SPEC_EXAMPLE[0]) | change
    with pytest.raises(ConfigError) as info:
        parse_predictions([table], path="profiles.toml")
    err = info.value
    assert err.path == "profiles.toml" and err.section == "predictions[churn_30d]" and err.key == key
    assert words in str(err) and "profiles.toml" in str(err)


def test_ltv_requires_property():
    table = {k: v for k, v in SPEC_EXAMPLE[1].items() if k != "property"}
    with pytest.raises(ConfigError, match="property"):
        parse_predictions([table], path="p.toml")


def test_duplicate_names_are_rejected():
    with pytest.raises(ConfigError, match="used twice"):
        parse_predictions([SPEC_EXAMPLE[0], SPEC_EXAMPLE[0]], path="p.toml")


@pytest.mark.parametrize("prop", ["a..b", "", 3, ".revenue"])
def test_ltv_property_must_be_a_property_path(prop):
    table = dict(SPEC_EXAMPLE[1]) | {"property": prop}
    with pytest.raises(ConfigError) as info:
        parse_predictions([table], path="p.toml")
    assert info.value.key == "property"


def test_a_name_with_a_trailing_newline_is_not_a_name():
    with pytest.raises(ConfigError) as info:
        parse_predictions([dict(SPEC_EXAMPLE[0]) | {"name": "churn\n"}], path="p.toml")
    assert info.value.key == "name"
