# syntax=docker/dockerfile:1
# DistrictPulse server image: `districtpulse ingest`, `districtpulse simulate`, ... (see docker-compose.yml).

# --- build: install the project with its server extra into a virtualenv -------------------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .git, tests, secrets).
COPY . .
# The project itself (".") is what is installed; its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[server]"

# --- runtime: the virtualenv only, run as an unprivileged user ----------------------------------------------
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 districtpulse \
    && useradd --system --uid 10001 --gid districtpulse --create-home --home-dir /home/districtpulse \
       --shell /usr/sbin/nologin districtpulse

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/home/districtpulse/.cache/numba \
    DP_STATE_DIR=/home/districtpulse/.services

# Numeric, so Kubernetes-style runAsNonRoot checks can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/districtpulse

ENTRYPOINT ["districtpulse"]
CMD ["--help"]
