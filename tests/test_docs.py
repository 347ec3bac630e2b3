"""The docs tell the truth: the settings table is the declared one, and the README's commands exist."""

import argparse
import re
from pathlib import Path

from aggregator.cli import parser
from aggregator.settings import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_settings_table_is_the_declared_one():
    table = (ROOT / "docs" / "settings.md").read_text().split("<!-- settings -->\n")[1]
    assert table.strip() == markdown_table()


def test_fresh_machine_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def _options(command: argparse.ArgumentParser) -> set[str]:
    """A command's options and those of its subcommands (`db trim --keep-days`)."""
    options = {o for action in command._actions for o in action.option_strings}
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            options |= {o for sub in action.choices.values() for o in _options(sub)}
    return options


def test_documented_options_exist():
    options = _options(parser())
    documented = set(re.findall(r"(--[a-z][a-z-]+)", README.split("## The batch job")[1].split("## Settings")[0]))
    assert documented <= options, documented - options
