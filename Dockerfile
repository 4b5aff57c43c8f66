# pynomaly's image: one binary that runs every process of a deployment —
#   docker run IMAGE                  the HTTP service (`serve`, the default command)
#   docker run IMAGE worker           a job worker (REDIS_URL, DATABASE_URL)
#   docker run IMAGE migrate          the Postgres migrations, then exit
#   docker run IMAGE stream …         scoring a Redis stream or Kafka topic
#   docker run IMAGE keys create …    an API key
#   docker run IMAGE config check     the environment checked without starting anything
# Build: `DOCKER_BUILDKIT=1 docker build -t pynomaly .` (BuildKit's cache mounts keep the
# cargo registry and target directory between builds, so a source change rebuilds only
# what it touches). deploy/README.md runs it in production; deploy/ci/image.sh is what CI
# runs, with base images made locally and passed as the two arguments below.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# librdkafka and its vendored OpenSSL are built with make and perl, aws-lc with a C and
# C++ compiler; nothing of these is needed at run time.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates g++ make perl pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The workspace's sources are touched first: COPY keeps the context's modification times,
# which can predate what the cached target directory built, and cargo judges freshness by
# them (only the workspace's crates rebuild; dependencies stay cached). The image's copy
# leaves out the debug line tables (most of the binary's size); its symbols stay, so a
# backtrace still names the functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    find crates -type f -exec touch {} + \
    && cargo build --release --locked -p pynomaly \
    && mkdir -p /out \
    && objcopy --strip-debug target/release/pynomaly /out/pynomaly

FROM ${RUNTIME_IMAGE}
# The CA bundle for https:// S3, OTLP and Kafka endpoints; a user and group of their own
# (no shell, no home beyond the data directory).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/pynomaly /usr/local/bin/pynomaly
RUN echo 'pynomaly:x:10001:10001:pynomaly:/var/lib/pynomaly:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'pynomaly:x:10001:' >> /etc/group \
    && mkdir -p /var/lib/pynomaly \
    && chown 10001:10001 /var/lib/pynomaly \
    && chmod 0750 /var/lib/pynomaly
# Inside the image only: listen on every interface (the binary's own default is loopback).
# The data directory holds the embedded SQLite store, local artifacts, the server secret
# and the first admin key: a volume, so the root filesystem can be mounted read-only.
ENV PYNOMALY_BIND=0.0.0.0:8000 \
    PYNOMALY_DATA_DIR=/var/lib/pynomaly \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/var/lib/pynomaly"]
WORKDIR /var/lib/pynomaly
USER 10001:10001
EXPOSE 8000
# `serve`'s liveness; a worker overrides it with `healthcheck --metrics` (its metrics port).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pynomaly", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pynomaly"]
CMD ["serve"]
