"""The data plane through a real gateway app in front of a real upstream server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from gateway.app import GATEWAY
from gateway.observability.access import AccessLog
from tests.conftest import GatewayFactory
from tests.rawhttp import raw_request
from tests.upstream import UpstreamState, header_values


def capture_access_log(client: TestClient[web.Request, web.Application]) -> io.StringIO:
    """Point the gateway's access log at a buffer and return it."""
    stream = io.StringIO()
    client.app[GATEWAY].access_log = AccessLog(stream, "json")
    return stream


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def echo_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


# -- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected_route_path"),
    [
        pytest.param("/v1/user", "/v1/user", id="exact-prefix"),
        pytest.param("/v1/user/42?x=1", "/v1/user/42?x=1", id="below-prefix-with-query"),
        pytest.param("/v1/user/profile/photo", "/v1/user/profile/photo", id="longest-prefix-wins"),
        pytest.param("/v1/client/a%20b%2Fc?q=%20", "/v1/client/a%20b%2Fc?q=%20", id="encoding-passed-as-sent"),
    ],
)
async def test_prefix_routing_forwards_path_as_sent(
    make_gateway: GatewayFactory, path: str, expected_route_path: str
) -> None:
    client = await make_gateway(
        routes=[
            {"name": "user", "prefix": "/v1/user"},
            {"name": "client", "prefix": "/v1/client"},
            {"name": "photo", "prefix": "/v1/user/profile", "strip_prefix": True},
        ]
    )
    echo = await echo_of(await client.get(path))
    if "profile" in path:
        assert echo["raw_path"] == "/photo"
    else:
        assert echo["raw_path"] == expected_route_path


async def test_prefix_match_is_segment_aware(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[{"name": "user", "prefix": "/v1/user"}])
    response = await client.get("/v1/username")
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["code"] == "route.not_found"
    assert problem["status"] == 404
    assert problem["request_id"] == response.headers["X-Request-Id"]


async def test_strip_prefix_and_upstream_base_path(make_gateway: GatewayFactory, upstream: TestServer) -> None:
    base = str(upstream.make_url("/base")).rstrip("/")
    client = await make_gateway(
        routes=[
            {"name": "sdk", "prefix": "/v1/sdk", "strip_prefix": True},
            {"name": "based", "prefix": "/v1/based", "strip_prefix": True, "upstream": base},
        ]
    )
    assert (await echo_of(await client.get("/v1/sdk/a/b?x=1")))["raw_path"] == "/a/b?x=1"
    assert (await echo_of(await client.get("/v1/sdk")))["raw_path"] == "/"
    assert (await echo_of(await client.get("/v1/based/echo")))["raw_path"] == "/base/echo"


async def test_methods_restrict_a_route_and_405_lists_allowed(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        routes=[
            {"name": "read", "prefix": "/v1/user", "methods": ["GET"]},
            {"name": "write", "prefix": "/v1/user", "methods": ["POST"]},
        ]
    )
    assert (await echo_of(await client.post("/v1/user/1", data=b"x")))["method"] == "POST"
    response = await client.delete("/v1/user/1")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, POST"
    assert (await response.json())["code"] == "route.method_not_allowed"


async def test_a_method_excluded_from_a_longer_prefix_falls_back_to_a_shorter_one(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/v1"}, {"name": "user-read", "prefix": "/v1/user", "methods": ["GET"]}]
    )
    assert (await echo_of(await client.put("/v1/user/1")))["method"] == "PUT"


@pytest.mark.parametrize("path", ["/v1/user/../admin", "/v1/user/%2e%2e/admin", "/v1/./user"])
async def test_dot_segments_are_refused(make_gateway: GatewayFactory, upstream_state: UpstreamState, path: str) -> None:
    client = await make_gateway(routes=[{"name": "user", "prefix": "/v1/user"}, {"name": "root", "prefix": "/"}])
    status, reply = await raw_request(client.host, client.server.port or 0, f"GET {path} HTTP/1.1\r\nHost: x")
    assert status == 400
    assert b'"code":"request.bad_path"' in reply
    assert upstream_state.requests == 0


async def test_absolute_form_request_target_is_refused(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    status, reply = await raw_request(
        client.host, client.server.port or 0, "GET http://elsewhere/x HTTP/1.1\r\nHost: x"
    )
    assert status == 400
    assert upstream_state.requests == 0


async def test_host_is_the_upstreams_unless_preserved(make_gateway: GatewayFactory, upstream: TestServer) -> None:
    client = await make_gateway(
        routes=[{"name": "plain", "prefix": "/plain"}, {"name": "kept", "prefix": "/kept", "preserve_host": True}]
    )
    plain = await echo_of(await client.get("/plain", headers={"Host": "api.example.com"}))
    assert header_values(plain, "Host") == [f"{upstream.host}:{upstream.port}"]
    assert header_values(plain, "X-Forwarded-Host") == ["api.example.com"]
    kept = await echo_of(await client.get("/kept", headers={"Host": "api.example.com"}))
    assert header_values(kept, "Host") == ["api.example.com"]


@pytest.mark.parametrize("prefix", ["/plain", "/kept"])
async def test_headers_reach_the_upstream_in_order_with_every_value(make_gateway: GatewayFactory, prefix: str) -> None:
    client = await make_gateway(
        routes=[{"name": "plain", "prefix": "/plain"}, {"name": "kept", "prefix": "/kept", "preserve_host": True}]
    )
    sent = [("X-First", "1"), ("X-Repeated", "a"), ("X-Middle", "2"), ("X-Repeated", "b"), ("X-Last", "3")]
    echo = await echo_of(await client.get(prefix, headers=CIMultiDict(sent)))
    received = [
        (name, value) for name, value in echo["headers"] if name.lower().startswith("x-") and name in dict(sent)
    ]
    assert received == sent
    assert echo["headers"][0][0].lower() == "host"  # first, as HTTP/1.1 clients send it


# -- headers ----------------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_removed_both_ways(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    echo = await echo_of(
        await client.get(
            "/echo",
            headers={
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "1",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "Proxy-Connection": "keep-alive",
                "X-End-To-End": "kept",
            },
        )
    )
    sent = {name.lower() for name, _ in echo["headers"]}
    for hop in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection"):
        assert hop not in sent
    assert header_values(echo, "X-End-To-End") == ["kept"]

    response = await client.get("/hop")
    assert response.status == 200
    assert "X-Up-Private" not in response.headers
    assert "Keep-Alive" not in response.headers
    assert response.headers["X-Kept"] == "1"


async def test_identity_headers_from_clients_are_stripped_and_counted(
    make_gateway: GatewayFactory, admin_client: Any
) -> None:
    client = await make_gateway()
    echo = await echo_of(
        await client.get(
            "/echo",
            headers={
                "X-User-Id": "admin",
                "x-tenant-id": "other-tenant",
                "X-Service-Id": "billing",
                "X-Auth-Scopes": "everything",
                "X-Gateway-Signature": "forged",
                "X-Userish": "kept",
            },
        )
    )
    sent = {name.lower() for name, _ in echo["headers"]}
    assert not sent & {"x-user-id", "x-tenant-id", "x-service-id", "x-auth-scopes", "x-gateway-signature"}
    assert header_values(echo, "X-Userish") == ["kept"]

    admin = await admin_client(client)
    metrics = await (await admin.get("/metrics")).text()
    assert 'gateway_spoofed_headers_total{header="X-User-Id"} 1.0' in metrics
    assert 'gateway_spoofed_headers_total{header="X-Auth-*"} 1.0' in metrics
    assert 'gateway_spoofed_headers_total{header="X-Gateway-*"} 1.0' in metrics


async def test_identity_header_list_is_configurable(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(identity_headers=["X-Internal-*"])
    echo = await echo_of(await client.get("/echo", headers={"X-Internal-Role": "root", "X-User-Id": "u1"}))
    assert header_values(echo, "X-Internal-Role") == []
    assert header_values(echo, "X-User-Id") == ["u1"]


async def test_forwarding_headers_from_an_untrusted_peer_are_replaced(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(trusted_proxies=["10.0.0.0/8"])
    log = capture_access_log(client)
    if True:
        echo = await echo_of(
            await client.get(
                "/echo",
                headers={
                    "X-Forwarded-For": "10.0.0.1",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "evil.example",
                    "Forwarded": "for=10.0.0.1",
                },
            )
        )
    assert header_values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echo, "X-Forwarded-Proto") == ["http"]
    assert header_values(echo, "X-Forwarded-Host") != ["evil.example"]
    assert header_values(echo, "Forwarded")[0].startswith("for=127.0.0.1;proto=http;host=")
    await asyncio.sleep(0)  # the access log is written once per loop iteration
    assert access_lines(log)[-1]["client_ip"] == "127.0.0.1"


async def test_forwarding_headers_from_a_trusted_peer_are_appended(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])
    log = capture_access_log(client)
    if True:
        echo = await echo_of(
            await client.get(
                "/echo",
                headers={
                    "X-Forwarded-For": "203.0.113.7, 10.1.2.3",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "api.example.com",
                    "Forwarded": "for=203.0.113.7;proto=https",
                },
            )
        )
    assert header_values(echo, "X-Forwarded-For") == ["203.0.113.7, 10.1.2.3, 127.0.0.1"]
    assert header_values(echo, "X-Forwarded-Proto") == ["https"]
    assert header_values(echo, "X-Forwarded-Host") == ["api.example.com"]
    assert header_values(echo, "Forwarded")[0].startswith("for=203.0.113.7;proto=https, for=127.0.0.1;proto=http")
    await asyncio.sleep(0)
    assert access_lines(log)[-1]["client_ip"] == "203.0.113.7"


# -- request id -------------------------------------------------------------------------------


async def test_request_id_is_generated_sent_upstream_and_echoed(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    response = await client.get("/echo")
    echo = await echo_of(response)
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0  # 128 random bits in hex
    assert header_values(echo, "X-Request-Id") == [request_id]


@pytest.mark.parametrize(
    ("trusted", "sent", "kept"),
    [
        pytest.param(["127.0.0.0/8"], "trace-123.abc:def_9", True, id="trusted-well-formed-kept"),
        pytest.param(["10.0.0.0/8"], "trace-123", False, id="untrusted-replaced"),
        pytest.param(["127.0.0.0/8"], "has space", False, id="trusted-malformed-replaced"),
        pytest.param(["127.0.0.0/8"], "x" * 129, False, id="trusted-too-long-replaced"),
    ],
)
async def test_request_id_kept_only_from_a_trusted_hop_when_well_formed(
    make_gateway: GatewayFactory, trusted: list[str], sent: str, kept: bool
) -> None:
    client = await make_gateway(trusted_proxies=trusted)
    response = await client.get("/echo", headers={"X-Request-Id": sent})
    echo = await echo_of(response)
    assert (response.headers["X-Request-Id"] == sent) is kept
    assert header_values(echo, "X-Request-Id") == [response.headers["X-Request-Id"]]


async def test_request_id_is_in_every_log_line_of_the_request(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.observability.logging import JsonFormatter

    client = await make_gateway(routes=[{"name": "dead", "prefix": "/", "upstream": "http://127.0.0.1:9"}])
    log = capture_access_log(client)
    with caplog.at_level(logging.INFO):
        response = await client.get("/x")
    await asyncio.sleep(0)
    request_id = response.headers["X-Request-Id"]
    app_lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name.startswith("gateway.")]
    assert [line["msg"] for line in app_lines] == ["upstream unavailable"]
    lines = [*app_lines, *access_lines(log)]
    assert [line["request_id"] for line in lines] == [request_id, request_id]
    assert lines[-1]["status"] == 502


async def test_access_log_lines_are_json_with_every_field(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    log = capture_access_log(client)
    response = await client.post("/echo?secret=1", data=b"12345", headers={"X-Request-Id": 'x"y'})
    await response.read()
    await asyncio.sleep(0)
    (line,) = access_lines(log)
    assert line["path"] == "/echo"  # never the query string
    assert line["method"] == "POST"
    assert line["status"] == 200
    assert line["route"] == "all"
    assert line["bytes_in"] == 5
    assert line["bytes_out"] == int(response.headers["Content-Length"])
    assert line["upstream_ms"] <= line["duration_ms"]
    assert line["request_id"] == response.headers["X-Request-Id"]


# -- bodies -----------------------------------------------------------------------------------


async def test_large_body_streams_through_unbuffered(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    """The upstream sees the first chunk while the client is still sending: nothing buffers the whole body."""
    client = await make_gateway(routes=[{"name": "up", "prefix": "/", "max_body": "1GiB"}])
    chunk = os.urandom(64 * 1024)
    chunks = 512  # 32 MiB
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for index in range(chunks):
            digest.update(chunk)
            yield chunk
            if index == 0:
                # If the gateway buffered the body, the upstream would never see a first chunk here.
                await asyncio.wait_for(upstream_state.first_chunk.wait(), 5)

    echo = await echo_of(await client.post("/upload", data=body()))
    assert echo["body_bytes"] == chunks * len(chunk)
    assert echo["body_sha256"] == digest.hexdigest()
    assert header_values(echo, "Transfer-Encoding") == ["chunked"]


async def test_response_streams_before_the_upstream_finishes(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    response = await client.get("/stream?n=3")
    assert response.status == 200
    first = await asyncio.wait_for(response.content.readline(), 5)
    assert first == b"chunk0\n"  # arrived while the upstream is still waiting to be released
    upstream_state.release.set()
    assert await response.read() == b"chunk1\nchunk2\n"


async def test_compressed_bytes_pass_through_undecoded(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    echo = await echo_of(await client.get("/echo", headers={"Accept-Encoding": "identity"}))
    assert header_values(echo, "Accept-Encoding") == ["identity"]
    echo = await echo_of(await client.get("/echo", skip_auto_headers=["Accept-Encoding"]))
    assert header_values(echo, "Accept-Encoding") == []  # the gateway never adds one


async def test_body_over_the_limit_with_content_length_is_413_without_calling_upstream(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway(routes=[{"name": "small", "prefix": "/", "max_body": "1KiB"}])
    response = await client.post("/upload", data=b"x" * 2048)
    assert response.status == 413
    problem = await response.json()
    assert problem["code"] == "request.body_too_large"
    assert problem["request_id"] == response.headers["X-Request-Id"]
    assert upstream_state.requests == 0


async def test_chunked_body_over_the_limit_is_413(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[{"name": "small", "prefix": "/", "max_body": "64KiB"}])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 16 * 1024

    response = await client.post("/upload", data=body())
    assert response.status == 413
    assert (await response.json())["code"] == "request.body_too_large"


async def test_a_client_that_stalls_mid_body_is_408_and_frees_the_upstream_connection(
    make_gateway: GatewayFactory,
) -> None:
    # Found while testing slow clients: a body that stopped arriving held the request (and an upstream
    # connection of the route's pool) for as long as the client kept the connection open.
    client = await make_gateway(body_timeout="300ms")
    started = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection(client.host, client.server.port or 0)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in head
    length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    assert b'"code":"request.body_timeout"' in await reader.readexactly(length)
    assert asyncio.get_running_loop().time() - started < 3
    writer.close()
    response = await client.post("/echo", data=b"y" * 100)  # the gateway and its upstream pool go on
    assert (await echo_of(response))["body_bytes"] == 100


# -- upstream failures ------------------------------------------------------------------------


async def test_unreachable_upstream_is_502_problem(make_gateway: GatewayFactory, admin_client: Any) -> None:
    client = await make_gateway(routes=[{"name": "dead", "prefix": "/", "upstream": "http://127.0.0.1:9"}])
    response = await client.get("/anything")
    assert response.status == 502
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["code"] == "upstream.unavailable"
    assert "Traceback" not in await response.text()
    metrics = await (await (await admin_client(client)).get("/metrics")).text()
    assert 'gateway_upstream_errors_total{code="upstream.unavailable",route="dead"} 1.0' in metrics
    assert 'gateway_requests_total{code="502",method="GET",route="dead"} 1.0' in metrics


async def test_slow_upstream_is_504_problem(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[{"name": "slow", "prefix": "/", "timeouts": {"read": "100ms"}}])
    response = await client.get("/slow?s=2")
    assert response.status == 504
    assert (await response.json())["code"] == "upstream.timeout"


# -- websocket --------------------------------------------------------------------------------


async def test_websocket_frames_subprotocol_and_close_code_pass_through(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    async with client.ws_connect("/chat/ws", protocols=("chat", "superchat")) as ws:
        assert ws.protocol == "superchat"
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes(timeout=5) == b"\x00\x01"
        await ws.send_str("close:4001")
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4001


async def test_websocket_client_close_code_reaches_the_upstream(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    ws = await client.ws_connect("/chat/ws")
    await ws.send_str("ping")
    assert await ws.receive_str(timeout=5) == "ping"
    await ws.close(code=4002)
    for _ in range(50):
        if upstream_state.ws_close_codes:
            break
        await asyncio.sleep(0.02)
    assert upstream_state.ws_close_codes == [4002]


async def test_websocket_to_a_dead_upstream_is_502(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[{"name": "dead", "prefix": "/", "upstream": "http://127.0.0.1:9"}])
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/chat/ws")
    assert caught.value.status == 502


# Found by fuzzing the gateway with raw requests: each of these hung, or answered 200 with a problem document.


async def test_an_upgrade_header_on_a_request_that_is_not_a_handshake_is_an_ordinary_request(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway()
    # Not GET, Upgrade not listed in Connection, a body: forwarded as HTTP, the hop-by-hop Upgrade dropped.
    # (It used to be dialled as a WebSocket with the body's Content-Length: the upstream waited for a body.)
    status, reply = await asyncio.wait_for(
        raw_request(
            client.host,
            client.server.port or 0,
            "PATCH /x/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 2",
            b"{}",
        ),
        10,
    )
    assert status == 200, reply
    echo = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert echo["method"] == "PATCH" and echo["body_bytes"] == 2
    assert header_values(echo, "Upgrade") == []


async def test_a_handshake_without_its_key_is_400_and_the_upstream_is_not_dialled(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    status, reply = await raw_request(
        client.host,
        client.server.port or 0,
        "GET /chat/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade",
    )
    assert status == 400
    assert b'"code":"request.bad_websocket_handshake"' in reply
    assert upstream_state.requests == 0


async def test_a_websocket_to_an_upstream_answering_200_is_502(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/chat/echo")  # the upstream answers this path with a 200 JSON echo
    assert caught.value.status == 502


async def test_an_upstream_silent_on_the_handshake_is_504_after_the_read_timeout(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[{"name": "slow", "prefix": "/", "timeouts": {"read": "100ms"}}])
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await asyncio.wait_for(client.ws_connect("/chat/slow?s=3"), 2)
    assert caught.value.status == 504


async def test_a_path_holding_an_encoded_line_feed_reaches_the_handler(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway()
    status, reply = await raw_request(client.host, client.server.port or 0, "GET /a%0Ab/echo HTTP/1.1\r\nHost: x")
    assert status == 200, reply
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["raw_path"] == "/a%0Ab/echo"  # forwarded as sent
    assert b"X-Request-Id" in reply


async def test_a_request_aiohttp_cannot_parse_is_one_log_line_without_its_bytes(
    make_gateway: GatewayFactory, admin_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_gateway()
    secret = "sk_" + "s" * 9000  # over max_header_size: aiohttp refuses the line and used to log it whole
    with caplog.at_level(logging.INFO):
        status, _ = await raw_request(
            client.host, client.server.port or 0, f"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}"
        )
    assert status == 400
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.getMessage(), r.__dict__["error"]) for r in refused] == [
        ("INFO", "malformed request refused", "LineTooLong")
    ]
    assert refused[0].exc_info is None
    assert not any("sssssss" in r.getMessage() or r.exc_info for r in caplog.records)
    metrics = await (await (await admin_client(client)).get("/metrics")).text()
    assert "gateway_malformed_requests_total 1.0" in metrics
