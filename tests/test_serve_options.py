"""``edgeseg serve`` options: the CLI defaults are ServeOptions' (one source of truth), and the words the CLI hands
to the re-executed server process parse back to the same options. Needs no Triton."""

from __future__ import annotations

import argparse
import dataclasses

from edgeseg.triton.serve_options import ServeOptions, add_arguments, options_from_args, server_argv


def _parse(words):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(words)


def test_cli_defaults_are_the_dataclass_defaults():
    assert options_from_args(_parse(["m.onnx"])) == ServeOptions()
    help_text = argparse.ArgumentParser()
    add_arguments(help_text)
    text = " ".join(help_text.format_help().split())  # argparse wraps at the terminal width
    assert "(default 8000)" in text and "(default 8)" in text and "(default 100)" in text


def test_server_argv_round_trips_every_option():
    args = _parse(["m.onnx", "--host", "0.0.0.0", "--http-port", "9000", "--grpc-port", "9001", "--metrics-port",
                   "9002", "--name", "seg", "--max-batch-size", "4", "--no-dynamic-batching", "--max-queue-delay-us",
                   "50", "--instances", "2", "--threads", "3", "--log-verbose", "1", "--segmenter"])
    options = options_from_args(args)
    defaults = ServeOptions()
    assert all(getattr(options, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(ServeOptions))
    assert options_from_args(_parse(server_argv(args))) == options
