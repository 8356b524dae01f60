"""Authorizers: what a route allows once the caller is known (or before, for the network checks).

=============  ================================================  =====================
module         check                                             reason (403)
=============  ================================================  =====================
``ip``         the resolved client IP is in the route's CIDRs    ``ip.denied``
``origin``     a sent ``Origin`` is one of the route's origins   ``origin.denied``
``scopes``     the principal holds the scopes the method needs   ``scope.insufficient``
=============  ================================================  =====================

Each raises :class:`~gateway.pipeline.base.AccessDenied` and returns nothing when the
request is allowed; the policy (:mod:`gateway.pipeline.policy`) decides what a denial
does in the route's mode.
"""
