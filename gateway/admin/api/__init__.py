"""The admin API under ``/admin/v1`` on the admin listener: tokens, keys, clients, audit.

::

    application.py  create_admin_api / mount_admin_api: routes, auth, body limits, problem documents
    schema.py       Operation, Body, Field, Param: the declarations requests are validated against
    openapi.py      the OpenAPI 3.1 document, generated from the same declarations
    auth.py         admin tokens (Authorization: Bearer), read-only tokens
    errors.py       AdminError tree (admin.* codes) and the translation of store errors
    tokens.py keys.py clients.py audit.py   the operations, one module per resource

See docs/admin-api.md.
"""

from __future__ import annotations

from gateway.admin.api.application import OPERATIONS, PREFIX, create_admin_api, mount_admin_api

__all__ = ["OPERATIONS", "PREFIX", "create_admin_api", "mount_admin_api"]
