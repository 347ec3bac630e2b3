# One image for the batch job, a Dask scheduler or worker, and the API:
#   docker run IMAGE run --input ... | db init | serve --host 0.0.0.0
#   docker run --entrypoint dask IMAGE scheduler | worker tcp://scheduler:8786
# Installs exactly what the README's `make install` installs: the package from pyproject.toml, with its declared
# dependencies and the image's extras: EXTRAS, by default `parquet` (pyarrow, for `aggregator export`: the
# dataset is written where the snapshot is, by the image that writes it; 170 MB on disk, imported by no other
# command). To add another set, name both: --build-arg EXTRAS='[parquet,s3]' for s3:// pings and snapshots.
#
# Build info for /__version__ (Dockerflow's version.json):
#   docker build --build-arg VERSION=0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) \
#                --build-arg BUILD=$CI_JOB_URL -t telemetry-aggregates .

# Pinned base (both stages): the Python release pyproject.toml requires, on Debian bookworm.
FROM python:3.11.7-slim-bookworm AS build
ARG EXTRAS="[parquet]"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A C compiler for the package's compiled modules (aggregator/_scan.c, _buckets.c); the runtime stage needs none.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --upgrade pip
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY aggregator aggregator
COPY server server
RUN pip install --no-cache-dir .${EXTRAS} && aggregator --help >/dev/null

FROM python:3.11.7-slim-bookworm AS runtime
ARG VERSION=0.1.0
ARG COMMIT=unknown
ARG BUILD=local
ARG SOURCE=https://github.com/mozilla/python_mozaggregator
LABEL org.opencontainers.image.title="telemetry-aggregates" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MPL-2.0"
# /etc/dask-tls: where the Dask certificates are mounted (compose's `dask-tls` volume takes its owner from here).
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-log-init --create-home app \
    && mkdir -p /app /data /etc/dask-tls && chown 10001:10001 /data /etc/dask-tls
COPY --from=build /opt/venv /opt/venv
# Makes the Dask cluster's CA and certificate (compose's `dask-tls` service).
COPY deploy/dask_tls.py /app/dask_tls.py
# The API serves this file at /__version__ (API_VERSION_FILE, default /app/version.json).
RUN printf '{"source": "%s", "version": "%s", "commit": "%s", "build": "%s"}\n' \
        "${SOURCE}" "${VERSION}" "${COMMIT}" "${BUILD}" > /app/version.json
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_VERSION_FILE=/app/version.json \
    DASK_TEMPORARY_DIRECTORY=/tmp
USER 10001:10001
WORKDIR /home/app
EXPOSE 8000 8786 8787
ENTRYPOINT ["aggregator"]
CMD ["--help"]
