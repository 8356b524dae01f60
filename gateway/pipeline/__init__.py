"""The per-route policy pipeline: authenticate -> authorize -> mutate (see :mod:`gateway.pipeline.base`)."""
