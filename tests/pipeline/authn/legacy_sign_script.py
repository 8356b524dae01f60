"""An independent client for the legacy scheme: stdlib only, written from the formula, not from the gateway.

    python legacy_sign_script.py SERVICE_ID SECRET METHOD URL

Signs ``f"{service_id}:{METHOD}:{path}:{timestamp}"`` (path as it goes on the
wire, without the query) with HMAC-SHA256 keyed by the secret's UTF-8 bytes,
sends the request with urllib and prints the response body.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import time
import urllib.parse
import urllib.request


def main(service_id: str, secret: str, method: str, url: str) -> None:
    path = urllib.parse.urlsplit(url).path
    timestamp = str(int(time.time()))
    message = f"{service_id}:{method}:{path}:{timestamp}"
    signature = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - the test passes an http://127.0.0.1 URL
        url,
        method=method,
        headers={"X-Service-ID": service_id, "X-Service-Signature": signature, "X-Service-Timestamp": timestamp},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        sys.stdout.write(response.read().decode("utf-8"))


if __name__ == "__main__":
    main(*sys.argv[1:5])
