# syntax=docker/dockerfile:1
# The gateway image: `docker build -t gateway:0.1.0 .`
#
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/my-gateway.yaml:/etc/gateway/gateway.yaml:ro" gateway:0.1.0
#
# The entrypoint is the `gateway` CLI and the default command `serve`, so the other
# commands work too: `docker run --rm -v ...:/etc/gateway/gateway.yaml:ro gateway:0.1.0 check-config`.
# See docs/operations.md and docs/configuration.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway --no-create-home \
      --shell /usr/sbin/nologin gateway \
 && install -d -o gateway -g gateway -m 0750 /var/lib/gateway

# README.md is the package's readme in pyproject.toml: the build needs it.
COPY pyproject.toml README.md /tmp/src/
COPY gateway /tmp/src/gateway
RUN pip install /tmp/src && rm -rf /tmp/src

# A starting configuration; mount your own over it (a ConfigMap, a compose volume).
COPY config/gateway.yaml /etc/gateway/gateway.yaml

# GATEWAY_* override the file (docs/configuration.md). In a container the data
# listener must bind every interface; the admin listener stays on loopback unless
# the deployment exposes it deliberately (with admin.tokens_file).
ENV GATEWAY_CONFIG=/etc/gateway/gateway.yaml \
    GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_STORE=sqlite:////var/lib/gateway/gateway.db

WORKDIR /var/lib/gateway
USER 10001:10001
VOLUME ["/var/lib/gateway"]
EXPOSE 8080 9901

# `gateway serve` drains in-flight requests on SIGTERM (up to drain_timeout), then exits 0.
STOPSIGNAL SIGTERM

# Runs inside the container, so the loopback admin listener is reachable. The image
# has no curl: Python's urllib fails (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)"]

ENTRYPOINT ["gateway"]
CMD ["serve"]
