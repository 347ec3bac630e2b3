# One image for the batch job, a Dask scheduler or worker, and the API.
# Installs exactly what the README's `make install` installs: the package from pyproject.toml.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aggregator aggregator
COPY server server
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11.7-slim-bookworm
RUN useradd --uid 10001 --create-home app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
WORKDIR /home/app
ENTRYPOINT ["aggregator"]
CMD ["--help"]
