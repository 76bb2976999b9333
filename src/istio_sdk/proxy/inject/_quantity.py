"""Kubernetes resource quantities (``100m``, ``1Gi``, ``2000m``) in their canonical form.

The injector's resources pass through Kubernetes' ``resource.Quantity``, which prints a value
in canonical form: the suffix family of the input (binary ``Ki``/``Mi``/...,
decimal ``k``/``M``/... or a decimal exponent) with the largest suffix that keeps the number
whole, so ``2000m`` reads ``2`` and ``1024Mi`` reads ``1Gi``.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = ["canonical_quantity", "is_quantity"]

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([a-zA-Z]*|[eE][+-]?[0-9]+)$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
_MAX_TEXT = 64


def _parse(text: str) -> tuple[Decimal, str] | None:
    if len(text) > _MAX_TEXT:
        return None
    match = _QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    if suffix in _BINARY:
        return value * (Decimal(2) ** _BINARY[suffix]), "binary"
    if suffix in _DECIMAL:
        return value.scaleb(_DECIMAL[suffix]), "decimal"
    if suffix[:1] in ("e", "E"):
        exponent = int(suffix[1:])
        if abs(exponent) > 100:
            return None
        return value.scaleb(exponent), "exponent"
    return None


def is_quantity(text: str) -> bool:
    """Whether Kubernetes accepts ``text`` as a resource quantity."""
    return _parse(text) is not None


def canonical_quantity(text: str) -> str:
    """``text`` as Kubernetes prints the quantity; raises ValueError when it is none."""
    parsed = _parse(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    value, family = parsed
    # Kubernetes keeps nano precision, rounding up
    value = value.quantize(Decimal("1e-9"), rounding=ROUND_CEILING)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "0"
    if family == "binary" and value == value.to_integral_value() and value >= 1024:
        for suffix, bits in sorted(_BINARY.items(), key=lambda item: -item[1]):
            scaled = value / (Decimal(2) ** bits)
            if scaled == scaled.to_integral_value():
                return f"{sign}{int(scaled)}{suffix}"
    exponent = 18
    while exponent > -9:
        scaled = value.scaleb(-exponent)
        if scaled == scaled.to_integral_value():
            break
        exponent -= 3
    scaled = value.scaleb(-exponent)
    if family == "exponent" and exponent != 0:
        return f"{sign}{int(scaled)}e{exponent}"
    return f"{sign}{int(scaled)}{_DECIMAL_SUFFIX[exponent]}"
