# syntax=docker/dockerfile:1
#
# imgproxy and imgproxy-cache in one container, run side by side by entrypoint.sh (the
# wait-and-exit supervisor): imgproxy on 127.0.0.1:8081 (internal), the proxy on IMGPROXY_BIND
# (default :8080, exposed). If either stops, the container stops.
#
#   docker build -t imgproxy-cache .                                       # imgproxy v3.30.1
#   docker build --build-arg IMGPROXY_VERSION=v4.0.12 -t imgproxy-cache .  # imgproxy v4
#   docker run -p 8080:8080 --stop-timeout 25 \
#     -e S3_BUCKET=... -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... imgproxy-cache
#
# v3 (3.30.x) is the default, as in the original program; v4 (4.0.x) is supported: the
# end-to-end suite runs entrypoint.sh with imgproxy 4.0.12 built from source. The proxy is
# started by bin/start with the permission flags lib/permissions.ts computes — the same
# command `deno task start` runs — and tests/dockerfile_test.ts fails if this file drifts from
# those sources (Deno version, entry point, port, copied files, cached modules).
#
# --stop-timeout: on `docker stop` the proxy finishes responses in flight and drains its
# uploads (UPLOAD_DRAIN_TIMEOUT_IN_SEC, 8 s), and entrypoint.sh waits STOP_GRACE_PERIOD_IN_SEC
# (18 s) before SIGKILL; Docker's default 10 s would cut that short.

ARG IMGPROXY_IMAGE=ghcr.io/imgproxy/imgproxy
ARG IMGPROXY_VERSION=v3.30.1
ARG DENO_VERSION=2.9.6

FROM denoland/deno:bin-${DENO_VERSION} AS deno

FROM ${IMGPROXY_IMAGE}:${IMGPROXY_VERSION}

USER root
COPY --from=deno /deno /usr/local/bin/deno

ENV DENO_DIR=/opt/imgproxy-cache/.deno \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1 \
    NO_COLOR=1 \
    HOME=/opt/imgproxy-cache

WORKDIR /opt/imgproxy-cache
COPY deno.json deno.lock ./
COPY main.ts entrypoint.sh ./
COPY bin ./bin
COPY lib ./lib

# Fetch every dependency now, so the container needs no registry at run time (the entry point
# passes --cached-only to `deno run`). The S3 store is loaded dynamically: cache it explicitly.
RUN deno install --frozen \
  && deno cache --frozen main.ts lib/store/s3.ts lib/permissions.ts lib/healthcheck.ts \
  && useradd --system --uid 10001 --user-group --home-dir /opt/imgproxy-cache \
       --shell /usr/sbin/nologin imgproxy-cache \
  && chown -R imgproxy-cache:imgproxy-cache /opt/imgproxy-cache \
  && chmod 0755 entrypoint.sh bin/start bin/healthcheck

USER 10001:10001

EXPOSE 8080

# bin/healthcheck: with METRICS_BIND set, GET /readyz on the proxy's operations listener
# (imgproxy answers and the store is usable); without it, `imgproxy health`, which asks
# http://IMGPROXY_BIND/health: in this container that is the proxy's address, and the proxy
# forwards /health to imgproxy, so the check covers both processes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/imgproxy-cache/bin/healthcheck"]

ENTRYPOINT ["/opt/imgproxy-cache/entrypoint.sh", "--cached-only"]
