# The test node's pod sandbox image (containerd's sandbox_image name): the static `pause` program that
# scripts/testcluster builds from scripts/testcluster_lib/nodetools/pause. The build context is its folder.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
