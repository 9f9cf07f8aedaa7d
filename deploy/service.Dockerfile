# The image of the services that run no model: preprocess, embedding and interest (no
# TensorFlow). Built from the repository root:
#   docker build -f deploy/service.Dockerfile -t evorec-service .
# and run as `docker run evorec-service serve embedding` (compose and Kubernetes say which).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The dependencies, from pyproject.toml alone: a change of the source keeps this stage, and
# the final image's largest layer with it. The venv finds evorec's own code, installed in
# /opt/evorec-source by the next stage, through a .pth file.
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# PIP_NO_INDEX=1 with a filled deploy/wheels/ builds without the network (deploy/test.sh).
ARG PIP_NO_INDEX
RUN python3 -m venv /opt/evorec \
    && /opt/evorec/bin/python -c "import pathlib, sysconfig; \
pathlib.Path(sysconfig.get_path('purelib'), 'evorec-source.pth').write_text('/opt/evorec-source')"
COPY deploy/wheels/ /wheels/
WORKDIR /src
COPY pyproject.toml deploy/requirements.py ./
RUN python3 requirements.py pyproject.toml > requirements.txt \
    && /opt/evorec/bin/pip install --find-links /wheels -r requirements.txt

FROM deps AS build
ARG PIP_NO_INDEX
COPY README.md ./
COPY services/ services/
RUN /opt/evorec/bin/pip install --no-deps --find-links /wheels --target /opt/evorec-source .

FROM ${BASE_IMAGE}
# tini as PID 1 hands SIGTERM to the server, which drains; a base that has it skips apt.
RUN command -v tini >/dev/null \
    || (apt-get update && apt-get install --yes --no-install-recommends tini=0.19.0-1+b3 \
        && rm -rf /var/lib/apt/lists/*)
# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it; the data folders are
# the user's, so that a fresh named volume mounted on one is writable.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data --shell /usr/sbin/nologin evorec \
    && mkdir -p /data /datasets /models \
    && chown evorec:evorec /data /datasets /models
COPY --from=deps /opt/evorec /opt/evorec
COPY --from=build /opt/evorec-source /opt/evorec-source
COPY deploy/healthcheck.py /opt/evorec/healthcheck.py
# Listen on every interface of the container; compose and Kubernetes name the others' hosts.
ENV PATH=/opt/evorec-source/bin:/opt/evorec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EVOREC_DATA_DIR=/data \
    EVOREC_DATASET=/datasets/default \
    EVOREC_PREPROCESS__HOST=0.0.0.0 \
    EVOREC_EMBEDDING__HOST=0.0.0.0 \
    EVOREC_INTEREST__HOST=0.0.0.0
USER 10001:10001
WORKDIR /data
# gRPC and metrics of preprocess, embedding, interest.
EXPOSE 50051 50052 50053 9101 9102 9103
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/opt/evorec/healthcheck.py"]
# Last, so that a new revision or date changes only the image's metadata, not its layers.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="evorec-service" \
      org.opencontainers.image.description="evorec's preprocess, embedding and interest gRPC services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/evorec/evorec"
ENTRYPOINT ["tini", "--", "evorec"]
CMD ["serve", "preprocess"]
