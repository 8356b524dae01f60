"""Records for store tests, built through the public factories."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet

from gateway.credentials import ApiClient, ApiKey, SecretBox, ServiceKey, ServiceToken, generate_service_secret
from gateway.credentials.audit import AuditEvent, AuditResult

# Microseconds on purpose: every backend must round-trip them exactly.
NOW = datetime(2030, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
# Audit events are written after they happen: their times are recent (Redis bounds scans by write time).
RECENT = datetime.now(UTC).replace(microsecond=654321) - timedelta(minutes=30)
BOX = SecretBox([Fernet.generate_key().decode()])


def token(name: str = "ci-deploy", owner: str = "ci", **overrides: Any) -> ServiceToken:
    overrides.setdefault("scopes", ["deploy:write", "orders:read"])
    overrides.setdefault("allowed_ips", ["10.0.0.0/8", "2001:db8::/32"])
    overrides.setdefault("expires", NOW + timedelta(days=30))
    overrides.setdefault("now", NOW)
    _, record = ServiceToken.issue(name=name, owner=owner, **overrides)
    return record


def hmac_key(service: str = "billing", key_id: str | None = None, **overrides: Any) -> ServiceKey:
    overrides.setdefault("now", NOW)
    return ServiceKey.new_hmac(service, generate_service_secret(), BOX, key_id=key_id, **overrides)


def client(name: str = "web-app", tenant: str = "acme", **overrides: Any) -> ApiClient:
    overrides.setdefault("allowed_ips", ["192.0.2.0/24"])
    overrides.setdefault("allowed_origins", ["https://app.example.com"])
    overrides.setdefault("scopes", ["orders:read"])
    return ApiClient.register(name=name, tenant=tenant, now=NOW, **overrides)


def api_key(client_id: str, **overrides: Any) -> ApiKey:
    overrides.setdefault("now", NOW)
    _, record = ApiKey.issue(client_id, **overrides)
    return record


def event(minutes: int = 0, **overrides: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "time": RECENT + timedelta(minutes=minutes),
        "result": AuditResult.ALLOW,
        "reason": "ok",
        "request_id": secrets.token_hex(8),
        "route": "client-api",
        "method": "GET",
        "credential_kind": "service_token",
        "credential_id": "ci-deploy",
        "principal": "service:ci",
        "tenant": "acme",
        "client_ip": "10.1.2.3",
        "user_agent": "curl/8.5",
    }
    values.update(overrides)
    return AuditEvent(**values)
