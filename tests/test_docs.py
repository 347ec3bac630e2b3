"""The README tells the truth: its settings table is the declared one, and its commands exist."""

import re
from pathlib import Path

from aggregator.cli import parser
from aggregator.settings import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_settings_table_is_the_declared_one():
    table = README.split("<!-- settings -->\n")[1]
    assert table.strip() == markdown_table()


def test_fresh_machine_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_documented_options_exist():
    commands = parser()._subparsers._group_actions[0].choices.values()
    options = {o for command in commands for action in command._actions for o in action.option_strings}
    documented = set(re.findall(r"(--[a-z][a-z-]+)", README.split("## The batch job")[1].split("## Settings")[0]))
    assert documented <= options, documented - options
