"""Exponential backoff with jitter: the one delay function every retry loop uses.

The delay before retry ``attempt`` (0 for the first retry) is drawn from
``[d * (1 - jitter), d]`` with ``d = min(maximum, initial * 2**attempt)``: ``jitter=1`` is "full
jitter", ``jitter=0.5`` "equal jitter" (AWS's names), ``jitter=0`` none. The exponent is capped,
so any attempt count, however large, gives a finite delay within ``[0, maximum]``: a loop that
has been retrying for days must not die of a float overflow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = ["backoff_delay", "check_backoff"]

# 2.0 ** 1023 is the largest power of two a float holds; past it ``**`` raises OverflowError.
_MAX_EXPONENT = 1023


def check_backoff(initial: float, maximum: float, jitter: float) -> None:
    """Raise ``ValueError`` unless ``initial`` and ``maximum`` are finite and ``>= 0`` and
    ``0 <= jitter <= 1`` (an ``initial`` above ``maximum`` just means every delay is capped)."""
    for name, value in (("initial", initial), ("maximum", maximum), ("jitter", jitter)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"backoff {name} must be a finite number >= 0, got {value!r}")
    if jitter > 1:
        raise ValueError(f"backoff jitter must be at most 1, got {jitter!r}")


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    *,
    jitter: float = 0.5,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry ``attempt``: see the module docstring.

    ``rng`` returns a number in ``[0, 1)`` (injectable for tests); a value outside, or NaN, is
    clamped. Raises ``ValueError`` for parameters :func:`check_backoff` refuses.
    """
    check_backoff(initial, maximum, jitter)
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    # initial * 2**1023 may be inf for a large initial; min() then picks the cap.
    ceiling = min(maximum, initial * 2.0**exponent)
    draw = float(rng())
    if not 0.0 <= draw <= 1.0:
        draw = 1.0 if draw > 1.0 else 0.0  # NaN lands here too
    return min(ceiling, ceiling * (1.0 - jitter) + ceiling * jitter * draw)
