# TEST ONLY: a stand-in for postgres:17 on the test node, which cannot pull images. Debian's PostgreSQL
# with the official image's environment contract (POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD, PGDATA)
# and uid 999, so manifests/base/postgres.yaml runs unchanged apart from the image name.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/* \
 && groupmod -g 999 postgres && usermod -u 999 -g 999 postgres
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
USER 999:999
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
