# syntax=docker/dockerfile:1
#
# weir's image: the `weir` binary, the pipeline files and the stock plugins
# they run. docker-compose.yml builds it for the weir service, the generator
# and the catalog; docs/docker.md explains the stack.

# --- Build: the plugins (wasm32-wasip2) and the weir binary, both release. ---
FROM rust:1.95.0-bookworm AS build
WORKDIR /src

# The toolchain file pins the compiler and names the wasm32-wasip2 target;
# installing from it keeps the image on the same toolchain as every other
# build of weir. Its own layer, so the toolchain is not fetched again when
# only the sources change.
COPY rust-toolchain.toml ./
RUN rustup toolchain install

# Cargo loads every member of the workspace, even to build one package, so
# all of them come in: the host, the benchmarks, the tests and xtask, with
# the contract (wit/) and the plugins' workspace that the host and the SDK
# read at compile time.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY wit wit
COPY host host
COPY plugins plugins
COPY bench bench
COPY tests tests
COPY xtask xtask

# The plugins build in their own workspace, whose .cargo/config.toml targets
# wasm32-wasip2, exactly as `cargo xtask demo` builds them. The caches keep
# downloads and compiled dependencies between builds; since a cache mount is
# gone after its step, the results are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    --mount=type=cache,target=/src/plugins/target,sharing=locked \
    set -eux; \
    (cd plugins && cargo build --release --locked); \
    cargo build --release --locked -p weir; \
    mkdir -p /out/plugins; \
    cp plugins/target/wasm32-wasip2/release/*.wasm /out/plugins/; \
    cp target/release/weir /out/weir

# --- Run: Debian slim and the binary. ---
FROM debian:bookworm-slim

# librdkafka is built into the binary with its own OpenSSL (TLS, SASL SCRAM
# and PLAIN), sqlx and reqwest with rustls; at run time weir needs libc,
# libm, libgcc_s and zlib, in the slim image already, and the system's CA
# certificates, which TLS to services signed by public CAs trusts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system weir \
    && useradd --system --gid weir --home-dir /weir --shell /usr/sbin/nologin weir \
    && mkdir -p /weir /var/cache/weir \
    && chown weir:weir /var/cache/weir

COPY --from=build /out/weir /usr/local/bin/weir

# Pipeline files name their plugins relative to themselves
# (../plugins/target/wasm32-wasip2/release/*.wasm), so the plugins go where
# they are in a checkout, beside pipelines/.
WORKDIR /weir
COPY pipelines pipelines
COPY --from=build /out/plugins/ plugins/target/wasm32-wasip2/release/

# Fails the build, rather than the first start, if a shared library the
# binary needs is missing here.
RUN ! ldd /usr/local/bin/weir | grep 'not found' && weir --version

# Compiled plugins are cached here; docker-compose.yml puts a volume on it.
ENV WEIR_CACHE_DIR=/var/cache/weir

USER weir
EXPOSE 7878
ENTRYPOINT ["weir"]
CMD ["run", "pipelines/demo.toml", "pipelines/activity.toml"]
