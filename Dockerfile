# syntax=docker/dockerfile:1
# apibalance-exporter: multi-stage, slim, non-root.
#   docker build -t apibalance-exporter .
#   docker run -p 9877:9877 apibalance-exporter --demo
#   docker run -p 9877:9877 -v "$PWD/apibalance.yml:/etc/apibalance/apibalance.yml:ro" \
#     -v "$PWD/keys:/run/secrets/apibalance:ro" apibalance-exporter

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The same venv path in both stages: its scripts' shebangs point here.
RUN python -m venv /opt/apibalance
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/apibalance/bin/pip install --no-compile . \
    && /opt/apibalance/bin/python -m compileall -q /opt/apibalance/lib

FROM python:3.11-slim
RUN groupadd --system --gid 10001 apibalance \
    && useradd --system --uid 10001 --gid apibalance --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin apibalance \
    && mkdir -p /etc/apibalance
COPY --from=build /opt/apibalance /opt/apibalance
ENV PATH=/opt/apibalance/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /etc/apibalance
USER 10001:10001
EXPOSE 9877
# With --web.config.file (TLS or basic auth) every endpoint is protected, this one too:
# override the health check then (see docs/security.md, "TLS and basic auth").
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4)"]
ENTRYPOINT ["apibalance-exporter"]
CMD ["--config.file=/etc/apibalance/apibalance.yml"]
