# carevault: the HTTP API and its operator commands in one small image.
# Build: docker build -t carevault .   Run: docker run -e DATABASE_URL=postgres://... -p 8080:8080 carevault
# Migrations are a separate step (on Railway, railway.json's preDeployCommand):
#   docker run --rm -e DATABASE_URL=postgres://... carevault carevault migrate up

# Build stage: the workspace's rust-version (Cargo.toml) on Debian 12.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p carevault \
    && install -m 0755 target/release/carevault /usr/local/bin/carevault

# Runtime stage: the binary, the CA certificates (TLS to the identity provider and the database)
# and a non-root user; nothing else.
FROM debian:bookworm-slim
# Not pinned (DL3008): bookworm's ca-certificates should track Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin carevault
COPY --from=builder /usr/local/bin/carevault /usr/local/bin/carevault

# The embedded PostgreSQL is for development machines: in the image every command needs
# DATABASE_URL and exits with a message naming it when it is missing.
ENV CAREVAULT_EMBEDDED=0
ENV ENVIRONMENT=production
# Railway (and most platforms) set PORT; the server listens on 0.0.0.0:$PORT.
ENV PORT=8080
EXPOSE 8080

USER 10001:10001
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["carevault", "healthcheck"]
# No ENTRYPOINT: a platform's start or pre-deploy command (`carevault migrate up`) then replaces
# CMD whole, whichever of ENTRYPOINT and CMD it overrides.
CMD ["carevault", "serve"]
