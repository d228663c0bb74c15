"""A real kubelet node for the test plane (`scripts/testcluster up --node`).

Next to the kwok nodes: kubelet and kube-proxy built from the apiserver's own Kubernetes source,
containerd, runc and the CNI plugins from Debian's packages (scripts/install-test-deps.sh), CoreDNS
built from source, and a FAKE device plugin advertising 8 nvidia.com/gpu. Everything stays on a
bridge this module makes (`t2v0`, 10.244.0.0/24: the node's address, the pods' addresses) and on
loopback; `teardown` removes every process, container, mount, interface and iptables rule it made.

The settings each fixed a failure on our VMs (docs/testing.md, "The real node"): cgroup v1 needs
`failCgroupV1: false` and the cgroupfs driver; runc fails to lower oom_score_adj here, so containerd's
CRI gets `restrict_oom_score_adj`; no registry is reachable, so the pause image is built locally under
the configured sandbox image name; Debian keeps the CNI plugins in /usr/lib/cni.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from . import build as b
from . import images

NODE_NAME = "t2v-node"
BRIDGE = "t2v0"
NODE_IP = "10.244.0.1"  # the bridge's address: the node IP, the pods' gateway, CoreDNS and the apiserver
POD_SUBNET = "10.244.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
# The kubelet looks for device plugins in this fixed folder (k8s.io/kubelet deviceplugin v1beta1).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
# kube-proxy's Service rules must see bridged traffic, and a pod's packet to a Service IP is routed back
# onto the bridge after its DNAT.
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": "1", "net.ipv4.ip_forward": "1"}
# Pods may talk to each other and to the node, never past it: nothing from the bridge is forwarded
# elsewhere (no masquerade either, so no answer could come back).
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-m", "comment", "--comment",
                "t2v test node: pods stay on the bridge", "-j", "DROP"]
# The model cache folder of manifests/overlays/testnode (its hostPath); `teardown` removes it.
TEST_MODEL_CACHE = Path("/var/lib/t2v-testnode")
COMPONENTS = ["containerd", "kubelet", "fakegpu", "kube-proxy", "coredns"]


class NodeError(RuntimeError):
    """The real node could not be set up; the message says which step and why."""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NodeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def containerd_root() -> Path:
    """containerd's content and snapshots live in the cache, so loaded images survive `down`."""
    return b.cache_root() / "containerd"


def socket(state: Path) -> Path:
    return state / "node" / "containerd.sock"


def ctr(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh("ctr", "--address", str(socket(state)), "--namespace", "k8s.io", *args, check=check)


# ---- network ----


def make_network(state: Path) -> None:
    """The bridge the node and its pods live on, and the sysctls kube-proxy needs (old values kept)."""
    node = state / "node"
    node.mkdir(parents=True, exist_ok=True)
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        raise NodeError(f"interface {BRIDGE} exists already: another test node is up (or a stale one: "
                        f"`scripts/testcluster down`, or `ip link del {BRIDGE}`)")
    _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    (node / "bridge").write_text(BRIDGE)
    _sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    if shutil.which("modprobe"):
        _sh("modprobe", "br_netfilter", check=False)  # built in on some kernels (and no modprobe there)
    old = {}
    for key, value in SYSCTLS.items():
        p = _sh("sysctl", "-n", key, check=False)
        if p.returncode != 0:
            raise NodeError(f"sysctl {key} is missing (br_netfilter not available?): {p.stderr.strip()}")
        old[key] = p.stdout.strip()
        _sh("sysctl", "-w", f"{key}={value}")
    (node / "sysctl.json").write_text(json.dumps(old))
    (node / "iptables-chains.json").write_text(json.dumps(_iptables_chains()))
    _sh("iptables", "-I", *FORWARD_RULE)
    (node / "forward-rule").write_text("inserted")


def _iptables_chains() -> dict[str, list[str]]:
    """Chain names per table (iptables-save), to tell the chains the kubelet and kube-proxy add from others."""
    tables: dict[str, list[str]] = {}
    table = ""
    for line in _sh("iptables-save").stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = []
        elif line.startswith(":"):
            tables[table].append(line[1:].split()[0])
    return tables


def _remove_added_chains(before: dict[str, list[str]]) -> None:
    """Delete the KUBE-* chains made since `up` (kube-proxy --cleanup leaves the kubelet's), and the rules
    in other chains that jump to them."""
    for table, chains in _iptables_chains().items():
        added = [c for c in chains if c.startswith("KUBE-") and c not in before.get(table, [])]
        if not added:
            continue
        for line in _sh("iptables-save", "-t", table).stdout.splitlines():
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in added \
                    and parts[1] not in added:
                _sh("iptables", "-t", table, "-D", *parts[1:], check=False)
        for c in added:
            _sh("iptables", "-t", table, "-F", c, check=False)
        for c in added:
            _sh("iptables", "-t", table, "-X", c, check=False)


def _remove_network(state: Path) -> None:
    node = state / "node"
    if (node / "forward-rule").is_file():
        while _sh("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
            pass
    if (node / "iptables-chains.json").is_file():
        _remove_added_chains(json.loads((node / "iptables-chains.json").read_text()))
    if (node / "bridge").is_file():
        _sh("ip", "link", "del", BRIDGE, check=False)
    if (node / "sysctl.json").is_file():
        for key, value in json.loads((node / "sysctl.json").read_text()).items():
            _sh("sysctl", "-w", f"{key}={value}", check=False)


# ---- configuration files ----


def _containerd_config(state: Path) -> Path:
    node = state / "node"
    cni = node / "cni"
    (cni / "net.d").mkdir(parents=True, exist_ok=True)
    (cni / "net.d" / "10-t2v.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "t2v",
        "plugins": [
            # No ipMasq: pods talk only to each other and to the node, so the bridge adds no iptables rule.
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "isDefaultGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(cni / "ipam"),
                      "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.244.0.10", "gateway": NODE_IP}]]}},
            {"type": "loopback"},
        ]}, indent=1))
    root = containerd_root()
    root.mkdir(parents=True, exist_ok=True)
    cfg = f"""version = 2
root = "{root / 'root'}"
state = "{node / 'containerd-state'}"
[grpc]
  address = "{socket(state)}"
[ttrpc]
  address = "{socket(state)}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE.ref}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / 'net.d'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""
    path = node / "containerd.toml"
    path.write_text(cfg)
    return path


def _kubelet_config(state: Path, ports: dict[str, int], pki: Path) -> Path:
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # cgroup v1 hosts (our VMs): refused by default since v1.35.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "address": NODE_IP, "port": ports["kubelet"], "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": ports["kubelet-healthz"],
        # Reached only from this machine's apiserver over the plane's bridge.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{socket(state)}",
        "clusterDNS": [NODE_IP], "clusterDomain": CLUSTER_DOMAIN, "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(state / "node" / "pod-logs"),
        # The images exist only here (no registry to pull them again): never garbage-collect them.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "serializeImagePulls": False, "failSwapOn": False, "maxPods": 110,
        "nodeStatusUpdateFrequency": "5s", "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    path = state / "node" / "kubelet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _corefile(state: Path, ports: dict[str, int]) -> Path:
    path = state / "node" / "Corefile"
    path.write_text(f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{ports['coredns-health']}
    ready 127.0.0.1:{ports['coredns-ready']}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {state / 'kubeconfig'}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")
    return path


# ---- start / stop ----


def start(state: Path, ports: dict[str, int], start_fn, wait_fn, get_ok) -> None:
    """Start containerd, load the images, then kubelet, the fake device plugin, kube-proxy and CoreDNS."""
    pki, kc = state / "pki", str(state / "kubeconfig")
    start_fn(state, "containerd", ["containerd", "--config", str(_containerd_config(state))])
    wait_fn("containerd", lambda: ctr(state, "version", check=False).returncode == 0, state, "containerd", 60)
    stop_containers(state)  # a killed session's containers are still recorded in the cached root
    images.load(images.TEST_NODE, address=str(socket(state)), marker_dir=containerd_root() / "t2v-loaded")
    root = state / "node" / "kubelet"
    root.mkdir(parents=True, exist_ok=True)
    start_fn(state, "kubelet", [
        str(b.binary("kubelet")), "--config", str(_kubelet_config(state, ports, pki)), "--kubeconfig", kc,
        "--hostname-override", NODE_NAME, "--node-ip", NODE_IP, "--root-dir", str(root),
        "--cert-dir", str(state / "node" / "kubelet-pki"), "-v", "1"])
    start_fn(state, "fakegpu", [str(b.binary("fakegpu")), "--count", "8", "--dir", str(DEVICE_PLUGIN_DIR)])
    start_fn(state, "kube-proxy", [
        str(b.binary("kube-proxy")), "--kubeconfig", kc, "--hostname-override", NODE_NAME,
        "--proxy-mode", "iptables", "--cluster-cidr", POD_SUBNET, "--bind-address", NODE_IP,
        "--healthz-bind-address", f"127.0.0.1:{ports['kube-proxy-healthz']}",
        "--metrics-bind-address", f"127.0.0.1:{ports['kube-proxy-metrics']}",
        "--nodeport-addresses", f"{NODE_IP}/32", "--conntrack-max-per-core", "0"])
    start_fn(state, "coredns", [str(b.binary("coredns")), "-conf", str(_corefile(state, ports))])
    wait_fn("kubelet", lambda: get_ok(f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz"), state, "kubelet", 120)
    wait_fn("kube-proxy", lambda: get_ok(f"http://127.0.0.1:{ports['kube-proxy-healthz']}/healthz"), state,
            "kube-proxy", 60)
    wait_fn("coredns", lambda: get_ok(f"http://127.0.0.1:{ports['coredns-ready']}/ready"), state, "coredns", 60)


def _our_shims(state: Path) -> list[int]:
    """containerd's shims for this plane (they outlive containerd): found by the socket in their command line."""
    needle = str(state / "node").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmd and needle in cmd:
                pids.append(int(proc.name))
    return pids


def stop_containers(state: Path) -> None:
    """Kill every container of this plane's containerd (kubelet already stopped) and remove them."""
    if socket(state).exists() and ctr(state, "version", check=False).returncode == 0:
        tasks = ctr(state, "tasks", "ls", "-q", check=False).stdout.split()
        for t in tasks:
            ctr(state, "tasks", "kill", "-s", "SIGKILL", t, check=False)
        deadline = time.monotonic() + 15
        for t in tasks:
            while ctr(state, "tasks", "delete", t, check=False).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        for c in ctr(state, "containers", "ls", "-q", check=False).stdout.split():
            ctr(state, "containers", "delete", c, check=False)


def teardown(state: Path) -> None:
    """After every process is stopped: shims, mounts, the bridge, kube-proxy's rules, the sysctls."""
    for pid in _our_shims(state):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    unmount_under(state)
    if (state / "node" / "kubelet.yaml").is_file():
        # kube-proxy's own clean-up removes its KUBE-* chains and rules in every table.
        _sh(str(b.binary("kube-proxy")), "--cleanup", check=False)
    (DEVICE_PLUGIN_DIR / "t2v-fakegpu.sock").unlink(missing_ok=True)
    _sh("rm", "-rf", str(TEST_MODEL_CACHE), check=False)
    # The kubelet links every container's log into this fixed folder; drop the links into our state.
    for link in Path("/var/log/containers").glob("*.log"):
        if link.is_symlink() and str(state) in os.readlink(link):
            link.unlink()
    _remove_network(state)


def unmount_under(root: Path) -> None:
    """Unmount everything below root, deepest first (tmpfs volumes, overlay rootfs, netns files)."""
    prefix = str(root.resolve()) + "/"
    for _ in range(3):
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                target = line.split()[4].replace("\\040", " ")
                if target.startswith(prefix):
                    mounts.append(target)
        if not mounts:
            return
        for m in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
