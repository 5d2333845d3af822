"""The ``ncap`` command line: parse, call the public API, format. Nothing imports this package."""

from ncap.cli.commands import main

__all__ = ["main"]
