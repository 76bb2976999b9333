"""The Check cache core, no network: which requests a stored verdict answers, and its bounds."""

from __future__ import annotations

import datetime

from grpclib.const import Status
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fake_mixer import referenced

from istio_sdk.api.istio.mixer.v1 import CheckResponsePreconditionResult
from istio_sdk.mixer.client.check_cache import CheckCache, Verdict

SCALARS = ["source.name", "source.user", "request.size", "x.custom"]
NAMES = [*SCALARS, "request.headers"]
KEYS = ["x-user", "x-debug"]

values = st.one_of(st.sampled_from(["a", "b", ""]), st.sampled_from([0, 1]), st.just(1.0))
maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["a", "b"]), max_size=2)
requests = st.fixed_dictionaries(
    {},
    optional={
        "source.name": values,
        "source.user": values,
        "request.size": values,
        "x.custom": values,
        "request.headers": maps,
    },
)
refs = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(SCALARS), st.none()),
        st.tuples(st.just("request.headers"), st.sampled_from(KEYS)),
    ),
    max_size=3,
    unique=True,
)


def _keyed(name: str, key: str | None) -> str | tuple[str, str]:
    # the client decodes a map key only if its request holds that attribute as a map
    return name if key is None else (name, key)


def _holds_exact(
    first: dict[str, object], later: dict[str, object], name: str, key: str | None
) -> bool:
    was, now = first.get(name), later.get(name)
    if isinstance(was, dict):  # referenced by key: the key's value must be the same
        return isinstance(now, dict) and key in now and now[key] == was[key]
    if now is None or isinstance(now, dict):
        return False
    return type(now) is type(was) and now == was


def _holds_absent(
    request: dict[str, object], later: dict[str, object], name: str, key: str | None
) -> bool:
    value = later.get(name)
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    map_key = key if isinstance(request.get(name), dict) and key is not None else ""
    return map_key not in value


def _found(value: object, key: str | None) -> bool:
    return not isinstance(value, dict) or (key is not None and key in value)


@settings(max_examples=300)  # pure and fast: enough examples for every branch, even in CI
@given(requests, requests, st.lists(st.sampled_from(NAMES), max_size=2), refs, refs)
def test_a_stored_verdict_answers_exactly_the_requests_that_fit_its_references(
    first: dict[str, object],
    changes: dict[str, object],
    dropped: list[str],
    exact: list[tuple[str, str | None]],
    absence: list[tuple[str, str | None]],
) -> None:
    # the later request is the first one with a few changes, so that both outcomes are common
    later = {n: v for n, v in {**first, **changes}.items() if n not in dropped}
    if "request.headers" in changes and isinstance(first.get("request.headers"), dict):
        later["request.headers"] = {**first["request.headers"], **changes["request.headers"]}  # type: ignore[dict-item]
    # the server only reports EXACT for what it found and ABSENCE for what it missed
    exact = [(n, k) for n, k in exact if n in first and _found(first[n], k)]
    absence = [
        (n, k) for n, k in absence if (n, k) not in exact and _holds_absent(first, first, n, k)
    ]
    cache = CheckCache()
    precondition = CheckResponsePreconditionResult(
        valid_duration=datetime.timedelta(seconds=10),
        valid_use_count=-1,
        referenced_attributes=referenced(
            exact=[_keyed(n, k) for n, k in exact],
            absence=[_keyed(n, k) for n, k in absence],
        ),
    )
    verdict = Verdict(Status.PERMISSION_DENIED, "no")
    assert cache.store(first, precondition, verdict, 0.0)
    assert cache.lookup(first, 1.0) == verdict  # the request it came with always fits
    fits = all(_holds_exact(first, later, n, k) for n, k in exact) and all(
        _holds_absent(first, later, n, k) for n, k in absence
    )
    assert (cache.lookup(later, 1.0) == verdict) is fits


def test_at_most_max_shapes_are_kept_the_oldest_is_forgotten() -> None:
    cache = CheckCache(max_shapes=2)
    for name in ("source.name", "source.user", "request.size"):
        precondition = CheckResponsePreconditionResult(
            valid_use_count=-1, referenced_attributes=referenced(exact=[name])
        )
        cache.store({name: "v"}, precondition, Verdict(Status.OK), 0.0)
    assert cache.lookup({"source.name": "v"}, 0.0) is None
    assert cache.lookup({"source.user": "v"}, 0.0) == Verdict(Status.OK)
    assert cache.lookup({"request.size": "v"}, 0.0) == Verdict(Status.OK)


def test_at_most_max_entries_are_kept_least_recently_used_first_out() -> None:
    cache = CheckCache(max_entries=2)
    precondition = CheckResponsePreconditionResult(
        valid_use_count=-1, referenced_attributes=referenced(exact=["source.name"])
    )
    for value in ("a", "b"):
        cache.store({"source.name": value}, precondition, Verdict(Status.OK, value), 0.0)
    assert cache.lookup({"source.name": "a"}, 0.0) is not None  # "a" is now the newest
    cache.store({"source.name": "c"}, precondition, Verdict(Status.OK, "c"), 0.0)
    assert cache.lookup({"source.name": "b"}, 0.0) is None
    assert [cache.lookup({"source.name": v}, 0.0) is not None for v in "ac"] == [True, True]
    assert len(cache) == 2


def test_a_huge_or_negative_valid_duration_is_handled() -> None:
    cache = CheckCache()
    for seconds, hit in ((-5, False), (315_576_000_000, True)):
        precondition = CheckResponsePreconditionResult(
            valid_duration=datetime.timedelta(seconds=seconds), valid_use_count=-1
        )
        cache.store({"a": str(seconds)}, precondition, Verdict(Status.OK), 0.0)
        assert (cache.lookup({"a": "1"}, 1.0) is not None) is hit
