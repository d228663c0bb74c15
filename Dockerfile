# syntax=docker/dockerfile:1
# The service image, t2v: the webapp (`t2v serve`), the controller (`t2v controller`) and the `t2v` CLI.
# Build from the repository root (or `make images`, which also builds without Docker):
#   docker build -t t2v:0.1.0 .
# BASE_IMAGE: any Debian or Ubuntu image with python3 >= 3.11 and its venv module (pinned by digest for
# users; `make images` passes a Debian base made from Debian packages for the test node).
ARG BASE_IMAGE=python:3.12-slim-bookworm@sha256:782412e85d0f0984994c290652577d4018aff08145c85b262bb63dc0c7522254
FROM ${BASE_IMAGE} AS python
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv --help >/dev/null 2>&1 \
 || (apt-get update \
     && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
     && rm -rf /var/lib/apt/lists/*)
RUN (getent group 10001 || groupadd --gid 10001 t2v) \
 && (getent passwd 10001 || useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin t2v) \
 && python3 -m venv /opt/venv

FROM python AS requirements
COPY pyproject.toml /pyproject.toml
RUN python3 -c "import tomllib; p = tomllib.load(open('/pyproject.toml', 'rb'))['project']; print('\\n'.join(p['dependencies']))" > /requirements.txt

FROM python
# Dependencies first (the large layer), from pyproject.toml's pinned list alone, read in a stage of its own:
# the layer is reused unless that list changes, not at every code change or edit of a linter's settings.
COPY --from=requirements /requirements.txt /requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -r /requirements.txt
COPY pyproject.toml /src/pyproject.toml
COPY core /src/core
COPY webapp /src/webapp
COPY controller /src/controller
COPY jobcontract /src/jobcontract
COPY jobimage /src/jobimage
COPY t2vcli /src/t2vcli
RUN /opt/venv/bin/pip install --no-deps --no-cache-dir /src && rm -rf /src
# Read-only root filesystem: nothing is written outside /tmp (an emptyDir in the manifests).
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
CMD ["t2v", "serve", "--host", "0.0.0.0", "--port", "8000"]
