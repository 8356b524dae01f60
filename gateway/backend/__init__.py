"""The auth backend: the organisation's identity service, asked about tokens the gateway cannot check itself.

::

    settings.py     authn.backend (how every call is made) and authn.introspection (who checks opaque tokens)
    client.py       BackendClient: one aiohttp session, a circuit breaker per endpoint, timeouts, size limits
    breaker.py      EndpointBreaker: pybreaker + one half-open trial at a time + a concurrency limit
    introspect.py   RFC 7662 introspection and a JSON validate endpoint -> Decision
    decisions.py    Decision, and reading one from an answer (bad answers are failures, never decisions)
    discovery.py    OIDC discovery: jwks_uri and introspection_endpoint from an issuer URL
    cache.py        DecisionCache: memory + the store, single-flight, stale grace, purges
    metrics.py      gateway_auth_backend_*, gateway_circuit_*, gateway_auth_cache_total
    wiring.py       AuthBackends: all of the above for one gateway, and its /readyz check

See docs/auth-backend.md.
"""
