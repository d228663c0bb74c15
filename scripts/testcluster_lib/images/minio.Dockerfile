# TEST ONLY: a stand-in for quay.io/minio/minio on the test node, which cannot pull images: the MinIO
# server that scripts/testcluster builds from source, on the Debian base. The build context is its folder.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY minio /usr/local/bin/minio
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/minio"]
