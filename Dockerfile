# Builds every HydroX binary on Debian 12 and ships them in one slim runtime image; the service to
# run is chosen by the command (see docker-compose.yml). Not exercised in this project's CI (no
# Docker engine there): `make run` is the tested path.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN bash scripts/deps.sh
COPY . .
RUN cmake --preset default && cmake --build --preset default

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpq5 libhiredis0.14 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/default/bin/ /usr/local/bin/
COPY db/migrations /opt/hydrox/migrations
ENV LISTEN_ADDRESS=0.0.0.0 MIGRATIONS_DIR=/opt/hydrox/migrations
