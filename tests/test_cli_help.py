"""Every option of every subcommand explains itself in --help and states its default (issue 16 item 12)."""

from __future__ import annotations

import argparse

import pytest

from edgeseg.cli import build_parser, main, shows_default


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


def _option_help(parser, action) -> str:
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


@pytest.mark.parametrize("name, parser", _subcommands(), ids=[name for name, _ in _subcommands()])
def test_every_option_has_help_and_shows_its_default(name, parser):
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            problems.append(f"{label}: no help text")
            continue
        text = _option_help(parser, action)
        if shows_default(action) and "default" not in text.lower():
            problems.append(f"{label}: default {action.default!r} not shown")
    assert not problems, f"edgeseg {name} --help: " + "; ".join(problems)


def test_train_help_states_the_training_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("--epochs EPOCHS", "(default: 30)", "(default: 8)", "(default: 0.003)", "(default: fastseg)",
                     "(default: 0.2)", "multiples of 32 (pspnet: 64) (default: 256 256)"):
        assert expected in text


def test_demo_effect_default_is_the_one_the_demo_uses(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: blur; overlay with --ultrasound)" in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "(default: overlay)" in " ".join(capsys.readouterr().out.split())


def test_selfie_source_help_says_single_images_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["selfie", "--help"])
    assert "a single image is refused" in " ".join(capsys.readouterr().out.split())
