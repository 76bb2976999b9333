"""CEXL's external functions and typed equalities (mixer/pkg/lang/externs.go), in Python.

Each raises :class:`EvaluationError` with Mixer's message where Mixer's returns an error. The
Go library behaviour they depend on (``net.ParseIP``, ``time.Parse(time.RFC3339)``,
``golang.org/x/net/idna``, ``net/mail``, ``net/url``, ``regexp``) is reproduced for the inputs
these functions see; RE2 comes from ``google-re2`` and ``url.Parse``'s verdict from
``istio_sdk.config._go``, shared with CRD rule validation.
"""

from __future__ import annotations

import calendar
import datetime
import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Callable

import idna
import re2

from istio_sdk.config._go import RegexError, compile_regex, parse_url, regex_search
from istio_sdk.mixer.errors import EvaluationError
from istio_sdk.timeutil import Timestamp

__all__ = [
    "dns_name",
    "dns_name_equal",
    "email",
    "email_equal",
    "ip",
    "ip_equal",
    "match",
    "matches",
    "regex_searcher",
    "size",
    "timestamp",
    "uri",
    "uri_equal",
]

RFC3339 = "2006-01-02T15:04:05Z07:00"
_V4_IN_V6 = b"\x00" * 10 + b"\xff\xff"


def size(text: str) -> int:
    """Go's ``len``: the UTF-8 byte count."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def match(text: str, pattern: str) -> bool:
    """Mixer's glob: a trailing ``*`` is a prefix test (first), a leading ``*`` a suffix test."""
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


def matches(pattern: str, text: str) -> bool:
    """``pattern.matches(text)``: an unanchored RE2 search (the *target* is the pattern)."""
    try:
        compile_regex(pattern)
    except RegexError as exc:
        raise EvaluationError(f"error parsing regexp: {exc}") from None
    return regex_search(pattern, text)


def regex_searcher(pattern: str) -> Callable[[str], bool]:
    """``matches`` for a constant pattern, compiled once (a bad one still fails when called)."""
    try:
        compiled = compile_regex(pattern)
    except RegexError:
        return lambda text: matches(pattern, text)
    # google-re2's public search() maps byte offsets back to str offsets, which costs ~10x
    # the match itself; a yes/no needs none of that, so use its matcher directly when present
    matcher = getattr(compiled, "_regexp", None)
    unanchored = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    no_match = getattr(re2, "_NULL_SPAN", None)
    if matcher is None or unanchored is None or no_match is None:  # pragma: no cover
        return lambda text: regex_search(pattern, text)
    run = matcher.Match

    def found(text: str) -> bool:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from a plain dict: Go's replacement rule
            return regex_search(pattern, text)
        return bool(run(unanchored, data, 0, len(data))[0] != no_match)

    return found


# --- ip() ---------------------------------------------------------------------------------


def _parse_ipv4(text: str) -> bytes | None:
    # Go 1.12's net.ParseIP: four decimal parts of at most 3 digits, each <= 255 (leading zeros
    # are allowed then)
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = bytearray()
    for part in parts:
        if not part or len(part) > 3 or not part.isascii() or not part.isdigit():
            return None
        value = int(part)
        if value > 255:
            return None
        out.append(value)
    return bytes(out)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip(s)``: Go's ``net.ParseIP`` (IPv4 dotted, or IPv6 without a zone)."""
    v4 = _parse_ipv4(text)
    if v4 is not None:
        return ipaddress.IPv4Address(v4)
    if ":" in text and "%" not in text and text.isascii():
        head, _, tail = text.rpartition(":")
        try:
            if "." in tail:
                embedded = _parse_ipv4(tail)
                if embedded is None:
                    raise ValueError(text)
                tail = str(ipaddress.IPv4Address(embedded))
            return ipaddress.IPv6Address(f"{head}:{tail}")
        except ValueError:
            pass
    raise EvaluationError(f"could not convert {text} to IP_ADDRESS")


def _ip16(value: object) -> bytes | None:
    if isinstance(value, ipaddress.IPv4Address):
        return _V4_IN_V6 + value.packed
    if isinstance(value, ipaddress.IPv6Address):
        return value.packed
    if isinstance(value, bytes):
        if len(value) == 4:
            return _V4_IN_V6 + value
        return value
    return None


def ip_equal(a: object, b: object) -> bool:
    """Go's ``net.IP.Equal``: an IPv4 address equals its ``::ffff:`` IPv6 form."""
    first, second = _ip16(a), _ip16(b)
    return first is not None and first == second


# --- timestamp() --------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def timestamp(text: str) -> datetime.datetime:
    """``timestamp(s)``: Go's ``time.Parse(time.RFC3339, s)`` (fractional seconds allowed)."""
    found = _RFC3339.fullmatch(text)
    failure = EvaluationError(
        f"could not convert '{text}' to TIMESTAMP. expected format: '{RFC3339}'"
    )
    if found is None:
        raise failure
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        raise failure
    if not 1 <= day <= calendar.monthrange(year, month)[1] or year == 0:
        raise failure
    fraction = (found.group(7) or "")[:9].ljust(9, "0")
    zone = found.group(8)
    if zone == "Z":
        tz = datetime.UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        if offset >= datetime.timedelta(hours=24):
            raise failure
        tz = datetime.timezone(sign * offset)
    nanos = int(fraction)
    base = datetime.datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=tz)
    return Timestamp.from_datetime(base, nanos % 1000) if nanos % 1000 else base


# --- dnsName(), email(), uri() ------------------------------------------------------------

_ACE = "xn--"
_JOINERS = ("\u200c", "\u200d")


def _invalid_label(label: str) -> ValueError:
    return ValueError(f'idna: invalid label "{label}"')


def _check_label(label: str) -> None:
    """x/net/idna's validateLabel: hyphens (V2, V3), a leading mark (V5), joiners (C)."""
    data = label.encode("utf-8", "surrogatepass")
    if len(data) > 4 and data[2:4] == b"--":
        raise _invalid_label(label)
    if data[:1] == b"-" or data[-1:] == b"-":
        raise _invalid_label(label)
    if unicodedata.category(label[0]).startswith("M"):
        raise _invalid_label(label)
    for position, char in enumerate(label):
        if char in _JOINERS and not idna.valid_contextj(label, position):
            raise _invalid_label(label)


def _from_punycode(label: str) -> str:
    """An ``xn--`` label decoded; its runes must be valid under STD3 rules (V1, V6)."""
    try:
        decoded = label[len(_ACE) :].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        raise _invalid_label(label) from None
    if unicodedata.normalize("NFC", decoded) != decoded:
        raise _invalid_label(decoded)
    try:
        if idna.uts46_remap(decoded, std3_rules=True, transitional=False) != decoded:
            raise _invalid_label(decoded)  # a mapped rune is not a valid one
    except idna.IDNAError:
        raise _invalid_label(decoded) from None
    return decoded


def _idna_to_unicode(name: str, *, lookup: bool) -> str:
    """x/net/idna's ToUnicode for Mixer's two profiles.

    ``lookup=False`` is dnsName()'s (ValidateLabels, StrictDomainName, VerifyDNSLength,
    BidiRule): the text is only NFC-normalized, so STD3 rules reach ``xn--`` labels alone, and
    ToUnicode checks no length but empty labels. ``lookup=True`` is the equality's
    (MapForLookup, BidiRule): UTS #46 mapping with STD3 rules (lowercasing) first.
    """
    if lookup:
        try:
            text = idna.uts46_remap(name, std3_rules=True, transitional=False)
        except idna.IDNAError as exc:
            rune = re.search(r"U\+[0-9A-F]{4,6}", str(exc))
            raise ValueError(f"idna: disallowed rune {rune.group() if rune else exc}") from None
    else:
        text = unicodedata.normalize("NFC", name)
    if text == "":
        raise _invalid_label(text)
    labels = text.split(".")
    root = len(labels) > 1 and labels[-1] == ""
    if root:
        labels = labels[:-1]
    out: list[str] = []
    for label in labels:
        if label == "":
            raise _invalid_label(text)
        unicode_label = _from_punycode(label) if label.startswith(_ACE) else label
        _check_label(unicode_label)
        out.append(unicode_label)
    if any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in text):
        for label in out:
            try:
                idna.check_bidi(label)
            except idna.IDNAError:
                raise _invalid_label(text) from None
    return ".".join(out) + ("." if root else "")


def dns_name(text: str) -> str:
    """``dnsName(s)``: validated as Mixer's x/net/idna profile does; its Unicode form."""
    try:
        return _idna_to_unicode(text, lookup=False)
    except ValueError as exc:
        raise EvaluationError(f"error converting '{text}' to dns name: '{exc}'") from None


def _dns_lookup_form(name: str) -> str:
    try:
        return _idna_to_unicode(name, lookup=True)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def dns_name_equal(a: str, b: str) -> bool:
    """Both mapped for lookup (lowercased); a trailing dot on one side only is dropped."""
    first, second = _dns_lookup_form(a), _dns_lookup_form(b)
    if first.endswith(".") != second.endswith("."):
        first, second = first.rstrip("."), second.rstrip(".")
    return first == second


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = rf'(?:{_ATEXT}(?:\.{_ATEXT})*|"(?:[^"\\\r\n]|\\.)*")'
_DOMAIN = rf"(?:{_ATEXT}(?:\.{_ATEXT})*|\[[^\[\]\\]*\])"
_ADDR_SPEC = re.compile(rf"({_LOCAL})@({_DOMAIN})")
_DISPLAY = re.compile(r"[^<>]*<([^<>]*)>")


def _email_parts(text: str) -> tuple[str, str]:
    """``net/mail.ParseAddress`` for an addr-spec or ``<addr-spec>``: (local, domain)."""
    body = text.strip(" \t")
    display = _DISPLAY.fullmatch(body)
    if display is not None:
        if body[: body.index("<")].strip(" \t"):
            raise ValueError("display names are not allowed")
        body = display.group(1)
    found = _ADDR_SPEC.fullmatch(body)
    if found is None:
        raise ValueError("mail: no angle-addr" if "<" in text else "mail: missing @ in addr-spec")
    local = found.group(1)
    if local.startswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, found.group(2)


def email(text: str) -> str:
    """``email(s)``: an address without a display name, its domain a valid DNS name."""
    try:
        _, domain = _email_parts(text)
    except ValueError as exc:
        if str(exc) == "display names are not allowed":
            raise EvaluationError(
                f"error converting '{text}' to e-mail: display names are not allowed"
            ) from None
        raise EvaluationError(f"error converting '{text}' to e-mail: '{exc}'") from None
    try:
        _idna_to_unicode(domain, lookup=False)
    except ValueError as exc:
        raise EvaluationError(
            f"error converting '{text}' to e-mail: 'error converting '{domain}' to dns name: "
            f"'{exc}''"
        ) from None
    return text


def email_equal(a: str, b: str) -> bool:
    """Domains compared as DNS names, local parts exactly."""
    try:
        local1, domain1 = _email_parts(a)
        local2, domain2 = _email_parts(b)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    return dns_name_equal(domain1, domain2) and local1 == local2


def uri(text: str) -> str:
    """``uri(s)``: non-empty and accepted by Go's ``url.Parse``."""
    if text == "":
        raise EvaluationError("error converting string to uri: empty string")
    try:
        parse_url(text)
    except ValueError as exc:
        raise EvaluationError(f"error converting string to uri '{text}': '{exc}'") from None
    return text


def uri_equal(a: str, b: str) -> bool:
    """Schemes case-insensitively; http(s) hosts as DNS names and ports exactly; then the rest."""
    for text in (a, b):
        try:
            parse_url(text)
        except ValueError as exc:
            raise EvaluationError(f"error converting string to uri '{text}': '{exc}'") from None
    first, second = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    if first.scheme.lower() != second.scheme.lower():
        return False
    if first.scheme.lower() in ("http", "https"):
        if not dns_name_equal(first.hostname or ".", second.hostname or "."):
            return False
        try:
            if first.port != second.port:
                return False
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
        return (first.path, first.query, first.fragment, first.username, first.password) == (
            second.path,
            second.query,
            second.fragment,
            second.username,
            second.password,
        )
    return first._replace(scheme="").geturl() == second._replace(scheme="").geturl()
