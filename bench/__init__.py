"""Benchmarks for the gateway: ``make bench`` / ``python -m bench`` (see docs/benchmarks.md).

Layout: ``scenarios`` (the catalogue: what is measured), ``servers`` (starting
and always stopping the processes under test), ``apps`` (the reference upstream
and minimal proxy), ``request`` (pre-rendered request pools, per-request
headers), ``loader``/``wrk``/``pyload`` (load generators), ``runner``
(interleaved rounds), ``results`` (medians, ratios, table, JSON), ``cli``.
"""
