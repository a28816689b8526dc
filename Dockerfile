# Sluice operator image.
#
#   docker build -t REGISTRY/sluice:0.1.0 .
#
# Two stages on the same pinned base: `build` installs the project and exactly
# the dependencies pyproject.toml declares into a virtualenv; the final stage
# copies only that virtualenv, runs as an unprivileged user and contains no
# compiler, no build tool and no source tree.

FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# What building the package needs, and nothing else (see .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/sluice/ operator/sluice/

# A virtualenv without pip: the build stage's pip installs into it, so the
# final image carries no installer in the operator's environment.
RUN python -m venv --without-pip /opt/sluice \
    && pip --python /opt/sluice/bin/python install --no-cache-dir /src


FROM python:3.11.14-slim-bookworm

# A fixed numeric uid/gid, so Kubernetes can verify runAsNonRoot.
RUN groupadd --system --gid 65532 sluice \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sluice

COPY --from=build /opt/sluice /opt/sluice

ENV PATH=/opt/sluice/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 65532:65532
WORKDIR /tmp
# 9090: Prometheus /metrics; 8080: liveness /healthz.
EXPOSE 9090 8080
ENTRYPOINT ["sluice"]
CMD ["run"]
