# syntax=docker/dockerfile:1
# fogis-calendar-sync: build with the official Rust image, run on distroless (glibc, CA
# certificates, no shell, no package manager) as the non-root user 65532.
#
#   docker build -t fogis-calendar-sync .
#   docker run -d -p 127.0.0.1:9083:9083 -e API_TOKEN -e FEED_TOKEN \
#       -v fogis-calendar-data:/data fogis-calendar-sync
#
# It listens on every interface of the container, so `serve` needs API_TOKEN and FEED_TOKEN
# (16+ characters each) or ALLOW_UNAUTHENTICATED=true, and stops with a message otherwise.
#
# tests/deploy.rs checks that this file's ENV, EXPOSE, VOLUME, USER and HEALTHCHECK agree with
# the code, and runs its ENTRYPOINT, CMD and HEALTHCHECK outside Docker.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The caches make a rebuild after a source change take seconds of dependency work, not minutes.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin fogis-calendar-sync \
    && install -D -m 0755 target/release/fogis-calendar-sync /out/fogis-calendar-sync \
    && install -d -m 0750 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fogis-calendar-sync" \
      org.opencontainers.image.description="A football referee's calendar that follows FOGIS in real time: Redis snapshots reconciled into SQLite, served as an iCalendar feed" \
      org.opencontainers.image.source="https://github.com/PitchConnect/fogis-calendar-sync" \
      org.opencontainers.image.url="https://github.com/PitchConnect/fogis-calendar-sync" \
      org.opencontainers.image.documentation="https://github.com/PitchConnect/fogis-calendar-sync#run-with-docker" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.vendor="PitchConnect"
COPY --from=build /out/fogis-calendar-sync /usr/local/bin/fogis-calendar-sync
# Owned by the runtime user: a new named volume on /data starts as a copy of it.
COPY --from=build --chown=65532:65532 /out/data /data
ENV BIND=0.0.0.0:9083 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 9083
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/fogis-calendar-sync", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fogis-calendar-sync"]
CMD ["serve"]
