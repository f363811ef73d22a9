"""profiles.toml: the [project] table and the errors a user sees for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_store_and_reports_are_relative_to_the_project_file(tmp_path):
    config = load_config(_write(tmp_path, '[project]\nname = "x"\nstore = "sub/s.duckdb"\n'))
    assert config.name == "x"
    assert config.store == (tmp_path / "sub" / "s.duckdb").resolve()
    assert config.reports is None
    assert config.reports_dir == (tmp_path / "sub" / "reports").resolve()
    assert config.traits == () and config.predictions == ()


def test_reports_follow_the_store_in_use_unless_configured(tmp_path):
    """``--store`` moves the default reports folder with the store; ``project.reports`` stays put."""
    from engine.project import Project

    default = load_config(_write(tmp_path, '[project]\nstore = "a.duckdb"\n'))
    other = tmp_path / "elsewhere" / "b.duckdb"
    assert Project(default, store=other).config.reports_dir == other.parent.resolve() / "reports"
    (tmp_path / "two").mkdir()
    fixed = load_config(_write(tmp_path / "two", '[project]\nstore = "a.duckdb"\nreports = "out"\n'))
    assert Project(fixed, store=other).config.reports_dir == (tmp_path / "two" / "out").resolve()


def test_a_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="profiles init"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "[project\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_an_unknown_section_is_named_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'trait'.*identity, predictions, project, traits"):
        load_config(_write(tmp_path, "[[trait]]\nname = 'x'\n"))


def test_an_unknown_project_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[project]\nstor = 'x.duckdb'\n"))
    assert info.value.key == "stor" and info.value.section == "project"


def test_a_config_error_is_also_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_config(_write(tmp_path, "[project]\nname = 3\n"))


def test_the_bundled_starter_file_is_valid():
    from engine.resources import STARTER_CONFIG, bundled_file

    config = load_config(bundled_file(STARTER_CONFIG))
    assert len(config.traits) >= 6
    assert {p.type for p in config.predictions} >= {"churn", "ltv"}


def test_the_starter_writes_out_the_default_identity_rules():
    from engine.identity.rules import parse_identity
    from engine.resources import STARTER_CONFIG, bundled_file

    assert load_config(bundled_file(STARTER_CONFIG)).identity == parse_identity(None, path="defaults")


@pytest.mark.parametrize("trait_name", ["churn_30d_percentile", "churn_30d"])
def test_names_that_would_collide_as_export_columns_are_rejected(tmp_path, trait_name):
    path = tmp_path / "profiles.toml"
    path.write_text(
        f'[[traits]]\nname = "{trait_name}"\ntype = "event_counter"\nevent = "E"\n\n'
        '[[predictions]]\nname = "churn_30d"\ntype = "churn"\nevent = "E"\nhorizon_days = 30\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="would appear twice in exports") as info:
        load_config(path)
    assert str(path) in str(info.value)
