# Multi-stage build of the ctrip binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ctrip

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 ctrip \
    && mkdir -p /run/ctrip-signer /var/lib/ctrip-signer \
    && chown ctrip: /run/ctrip-signer /var/lib/ctrip-signer \
    && chmod 0750 /var/lib/ctrip-signer
COPY --from=build /src/target/release/ctrip /usr/local/bin/ctrip
COPY config /etc/ctrip/config
ENV CTRIP_CONFIG_DIR=/etc/ctrip/config
USER ctrip
EXPOSE 8080
ENTRYPOINT ["ctrip"]
CMD ["serve"]
