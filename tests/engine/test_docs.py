"""The README is a contract: its commands must be the CLI's, and CI must run its test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import typer.main

from engine.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _click_app():
    return typer.main.get_command(app)


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert len(ci_lines) == 1, ci_lines
    test_commands = [b.strip() for b in _bash_blocks() if "pytest" in b]
    assert test_commands == [ci_lines[0].strip()]


def test_readme_install_command_runs_the_demo():
    demo = [b.strip() for b in _bash_blocks() if b.strip().endswith("profiles demo")]
    assert len(demo) == 1
    assert "pip install ." in demo[0]
    assert "demo" in _click_app().commands


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["profiles"] == "engine.cli:main"


def test_every_command_in_the_readme_table_exists_and_vice_versa():
    documented = set(re.findall(r"^\| `profiles (\w+)", README, flags=re.M))
    actual = set(_click_app().commands)
    assert documented == actual


def test_options_in_the_readme_table_exist_on_their_command():
    cli = _click_app()
    rows = re.findall(r"^\| `profiles (\w+)[^|]*\|(.*)$", README, flags=re.M)
    heads = re.findall(r"^\| `profiles (\w+)([^`]*)`", README, flags=re.M)
    checked = 0
    for (name, rest), (_, head) in zip(rows, heads, strict=True):
        options = {p for param in cli.commands[name].params for p in param.opts}
        for opt in set(re.findall(r"(--[a-z][a-z-]*)", head + rest)):
            assert opt in options, f"README says profiles {name} takes {opt}"
            checked += 1
    assert checked >= 8


def test_global_options_in_the_readme_exist():
    cli = _click_app()
    options = {p for param in cli.params for p in param.opts}
    for opt in ("--config", "--store", "--quiet", "--debug"):
        assert opt in options
        assert f"`{opt}" in README


def test_readme_examples_use_real_commands():
    cli = _click_app()
    used = set()
    for block in _bash_blocks():
        used |= set(re.findall(r"(?:^|\s|/)profiles (\w+)", block))
    assert used, "no profiles command found in README examples"
    assert used <= set(cli.commands), used - set(cli.commands)


def test_linked_docs_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_the_python_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python block, on the CLI test project (its user is u1, not 42)."""
    import shutil

    block = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(block) == 1
    cases = ROOT / "tests" / "cases" / "cli"
    shutil.copy(cases / "profiles.toml", tmp_path / "profiles.toml")
    (tmp_path / "exports").mkdir()
    shutil.copy(cases / "events.ndjson", tmp_path / "exports" / "events.ndjson")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block[0].replace("user_id:42", "user_id:u1"), "README.md", "exec"), namespace)
    assert namespace["df"].height == 2
    assert namespace["bad"].height == 2
    assert "total_inbounds" in capsys.readouterr().out
