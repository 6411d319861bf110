"""Command-line arguments: parse errors in one line, and argument types that state their rule.

    p = arguments.ArgumentParser(prog=..., ...)
    p.add_argument("--seed", type=arguments.integer(minimum=0), default=0)
    p.add_argument("--lr", type=arguments.number(positive=True), default=0.001)

A bad argument ends the program with exit code 2 and one line, `PROG: error: argument --seed: must
be an integer >= 0, not '-1' (see PROG --help)`, as every other bad input does (console.error).
"""

from __future__ import annotations

import argparse
import math

from . import console


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str):
        console.error(self.prog, f"{message} (see {self.prog} --help)")
        self.exit(2)


def integer(minimum: int | None = None, maximum: int | None = None):
    """An argparse type: an integer, at least `minimum` and at most `maximum`."""
    if minimum is not None and maximum is not None:
        rule = f"an integer from {minimum} to {maximum}"
    else:
        rule = (
            "an integer"
            + (f" >= {minimum}" if minimum is not None else "")
            + (f" <= {maximum}" if maximum is not None else "")
        )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if (
            value is None
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value

    return parse


def number(minimum: float | None = None, positive: bool = False):
    """An argparse type: a finite float, at least `minimum`, or > 0 with positive."""
    rule = (
        "a finite number"
        + (f" >= {minimum}" if minimum is not None else "")
        + (" > 0" if positive else "")
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (
            not math.isfinite(value)
            or (minimum is not None and value < minimum)
            or (positive and value <= 0)
        ):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value

    return parse
