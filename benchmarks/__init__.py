"""Benchmarks for istio-sdk, run with ``nox -s bench`` (``python -m benchmarks``).

Each ``bench_*.py`` module in this package defines ``main()``, which measures one area and
prints its figures. ``python -m benchmarks`` runs them all in name order; pass module names
(``codec``, ``bench_codec``) to run only some.
"""
