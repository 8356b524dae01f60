"""Fixtures for the auth backend tests: the fake identity service on a real port."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from tests.fakes.identity_service import IDENTITY, IdentityService, create_identity_service


@pytest.fixture
async def identity_server(aiohttp_server: AiohttpServer) -> TestServer:
    server = await aiohttp_server(create_identity_service())
    server.app[IDENTITY].issuer = str(server.make_url("")).rstrip("/")
    return server


@pytest.fixture
def identity(identity_server: TestServer) -> IdentityService:
    """The fake identity service's state: tokens, mode, call counters. ``identity.issuer`` is its base URL."""
    return identity_server.app[IDENTITY]
