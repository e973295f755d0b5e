"""Argument types shared by the CLI's commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = ["nonneg"]


def nonneg(kind: type) -> Callable[[str], Any]:
    """A finite number of ``kind`` (int or float) that is >= 0, else an argparse error."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"expected a {kind.__name__} >= 0, got {text!r}"
            ) from err
        if not math.isfinite(v) or v < 0:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} >= 0, got {text!r}")
        return v

    return parse
