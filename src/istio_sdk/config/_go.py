"""What Go's standard library accepts, where Kubernetes' verdicts on CRD rules depend on it.

The kube-apiserver is written in Go: a CEL rule's ``duration()`` is ``time.ParseDuration``,
``int()`` of a string is ``strconv.ParseInt``, ``matches()`` and a schema's ``pattern`` are Go's
``regexp`` (RE2), and Kubernetes' ``isURL()``/``url()`` are ``net/url``. Python's parsers accept
other things (``int(" 8_0")``, ``re``'s ``$`` before a final newline, ``urllib``'s leniency),
so this module re-implements the Go behaviour the validator needs, from Go's documented
rules, and reports what Go rejects as ``ValueError``. RE2 itself comes from ``google-re2``.
"""

from __future__ import annotations

import decimal
import functools
import math
import re
from typing import Any

import re2

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_HEX = frozenset("0123456789abcdefABCDEF")


def _show(text: str) -> str:
    """``text`` quoted for an error message, cut short when long (values come from users)."""
    return repr(text) if len(text) <= 64 else repr(text[:64]) + "..."


# --- strconv -----------------------------------------------------------------------------

_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def parse_int(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 10, 64)``: an optional sign and ASCII digits, in int64."""
    if _INT_TEXT.fullmatch(text) is None:
        raise ValueError(f"{_show(text)} is not an integer")
    number = int(text) if len(text.lstrip("+-").lstrip("0")) <= 19 else INT64_MAX + 1
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{_show(text)} is out of the int64 range")
    return number


def format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(value, 'g', -1, 64)`` (what ``%v`` prints)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    # repr() gives the shortest digits that read back as the same double, as Go's -1 does.
    _, digits_tuple, exponent = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    point = len(digits) + int(exponent)  # the decimal point sits after this many digits
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:  # Go's rule for the shortest form
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


# --- time.ParseDuration -------------------------------------------------------------------

_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _leading_digits(text: str, pos: int) -> int:
    while pos < len(text) and "0" <= text[pos] <= "9":
        pos += 1
    return pos


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``: nanoseconds, exactly (with Go's float64 step for fractions)."""
    invalid = ValueError(f"invalid duration {_show(text)}")
    body = text
    negative = False
    if body[:1] in ("-", "+"):
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise invalid
    total = 0
    pos = 0
    while pos < len(body):
        if not (body[pos] == "." or "0" <= body[pos] <= "9"):
            raise invalid
        end = _leading_digits(body, pos)
        if len(body[pos:end].lstrip("0")) > 19:  # more than int64 (and Python's int() limit)
            raise invalid
        whole = int(body[pos:end]) if end > pos else 0
        if whole > 2**63:
            raise invalid
        had_whole = end > pos
        pos = end
        fraction, scale, had_fraction = 0, 1.0, False
        if pos < len(body) and body[pos] == ".":
            end = _leading_digits(body, pos + 1)
            had_fraction = end > pos + 1
            overflow = False
            for char in body[pos + 1 : end]:  # Go stops adding digits once they overflow
                digit = ord(char) - ord("0")
                if overflow or fraction > (2**63 - 1) // 10 or fraction * 10 + digit > 2**63:
                    overflow = True
                    continue
                fraction = fraction * 10 + digit
                scale *= 10
            pos = end
        if not had_whole and not had_fraction:
            raise invalid
        end = pos
        while end < len(body) and not (body[end] == "." or "0" <= body[end] <= "9"):
            end += 1
        unit = _UNIT_NANOS.get(body[pos:end])
        if unit is None:
            raise ValueError(f"invalid duration {_show(text)}: missing or unknown unit")
        pos = end
        if whole > 2**63 // unit:
            raise invalid
        value = whole * unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))
            if value > 2**63:
                raise invalid
        total += value
        if total > 2**63:
            raise invalid
    if negative:
        return -total
    if total > INT64_MAX:
        raise invalid
    return total


# --- net/url, as Kubernetes' isURL() and url() use it -----------------------------------

_HOST_OK = frozenset("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_OK = frozenset("-._:~!$&'()*+,;=%@")
_PATH, _HOST, _ZONE, _USERINFO, _FRAGMENT = range(5)


def _alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _host_needs_escape(char: str) -> bool:
    # Go's shouldEscape(c, encodeHost) for one byte (a non-ASCII char stands for its bytes).
    return not (_alnum(char) or char in _HOST_OK)


def _check_escapes(text: str, mode: int) -> None:
    """Go's unescape(text, mode), keeping only its verdict."""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            digits = text[i + 1 : i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise ValueError(f"invalid URL escape {text[i : i + 3]!r}")
            if mode == _HOST and int(digits[0], 16) < 8 and digits != "25":
                raise ValueError(f"invalid URL escape {text[i : i + 3]!r} in host")
            if mode == _ZONE:
                byte = chr(int(digits, 16))
                if digits != "25" and byte != " " and _host_needs_escape(byte):
                    raise ValueError(f"invalid URL escape {text[i : i + 3]!r} in zone")
            i += 3
            continue
        if mode in (_HOST, _ZONE) and char.isascii() and _host_needs_escape(char):
            raise ValueError(f"invalid character {char!r} in host name")
        i += 1


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _check_host(host: str) -> None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise ValueError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise ValueError(f"invalid port {host[end + 1 :]!r} after host")
        zone = host.find("%25", 0, end)
        if zone >= 0:
            _check_escapes(host[:zone], _HOST)
            _check_escapes(host[zone:end], _ZONE)
            _check_escapes(host[end:], _HOST)
            return
    else:
        colon = host.rfind(":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            raise ValueError(f"invalid port {host[colon:]!r} after host")
    _check_escapes(host, _HOST)


def _check_authority(authority: str) -> None:
    at = authority.rfind("@")
    _check_host(authority[at + 1 :])
    if at >= 0:
        userinfo = authority[:at]
        if not all(_alnum(c) or c in _USERINFO_OK for c in userinfo):
            raise ValueError("invalid userinfo")
        _check_escapes(userinfo, _USERINFO)


def _split_scheme(text: str) -> tuple[str, str]:
    for i, char in enumerate(text):
        if char.isascii() and char.isalpha():
            continue
        if ("0" <= char <= "9" or char in "+-.") and i > 0:
            continue
        if char == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            return text[:i].lower(), text[i + 1 :]
        break
    return "", text


def _parse(text: str, *, via_request: bool) -> str:
    """Go's url.parse(text, viaRequest): the scheme, or ValueError where Go returns an error."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("invalid control character in URL")
    if text == "" and via_request:
        raise ValueError("empty url")
    if text == "*":
        return ""
    scheme, rest = _split_scheme(text)
    rest = rest.partition("?")[0]  # Go does not look at the query
    if not rest.startswith("/"):
        if scheme:
            return scheme  # an opaque URL ("mailto:x"): Go checks nothing more
        if via_request:
            raise ValueError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    if (scheme or (not via_request and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        _check_authority(authority)
        rest = slash + path
    _check_escapes(rest, _PATH)
    return scheme


def parse_request_uri(text: str) -> str:
    """Go's ``url.ParseRequestURI`` (an absolute URL or an absolute path): the scheme."""
    return _parse(text, via_request=True)


def parse_url(text: str) -> str:
    """Go's ``url.Parse`` (any URL reference, with a fragment): the scheme."""
    head, _, fragment = text.partition("#")
    scheme = _parse(head, via_request=False)
    _check_escapes(fragment, _FRAGMENT)
    return scheme


# --- regexp (RE2) ----------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class RegexError(ValueError):
    """A regular expression RE2 (and so Kubernetes and Istio) does not accept."""


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled with RE2 (cached); :class:`RegexError` when RE2 rejects it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"invalid RE2 regular expression {pattern!r}: {reason}") from None
    except UnicodeEncodeError:
        raise RegexError(f"regular expression {pattern!r} is not valid UTF-8") from None


def _utf8(text: str) -> str:
    # Go decodes JSON's lone surrogate escapes to U+FFFD; Python keeps them, and RE2 needs UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def regex_search(pattern: str, text: str) -> bool:
    """Whether RE2 ``pattern`` matches anywhere in ``text`` (Go's ``MatchString``)."""
    return compile_regex(pattern).search(_utf8(text)) is not None
