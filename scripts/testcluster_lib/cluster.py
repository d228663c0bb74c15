"""Start and stop the loopback control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok, Kueue.

Every component listens on 127.0.0.1 on a free port; pids, ports, certificates and
logs live in one state folder so `down` can stop exactly what `up` started.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from . import build as b
from . import node as realnode

KUEUE_NS = "kueue-system"
# With internal cert management off, Kueue reads serving certs from fixed paths that cannot be
# configured: the visibility server's (pkg/visibility/server.go) and the metrics server's
# (cmd/kueue/main.go; it exits at start when that cert is missing, even with metrics off).
VISIBILITY_CERT_DIR = Path("/visibility")
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
H100_LABELS = {
    "node.kubernetes.io/instance-type": "p5.48xlarge",
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.memory": "81559",
    "nvidia.com/gpu.family": "hopper",
    "nvidia.com/cuda.driver.major": "550",
    "kubernetes.io/arch": "amd64",
    "kubernetes.io/os": "linux",
    "type": "kwok",
}
ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kueue"]


@dataclass
class Cluster:
    """What `up` leaves behind: where to reach the cluster and its parts."""

    state_dir: str
    kubeconfig: str
    ports: dict[str, int]
    nodes: int
    gpus_per_node: int
    node: bool = False  # a real kubelet node (node.py) next to the kwok ones
    host: str = "127.0.0.1"  # the apiserver's address: loopback, or the real node's bridge address

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.ports['kube-apiserver']}"

    @property
    def components(self) -> list[str]:
        return ORDER + (realnode.COMPONENTS if self.node else [])


class ClusterError(RuntimeError):
    """The control plane could not be started; the message ends with the failing component's log tail."""


def _log_tail(state: Path, name: str, lines: int = 40) -> str:
    f = state / "logs" / f"{name}.log"
    try:
        tail = f.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last {len(tail)} lines of {f} ---\n" + "\n".join(tail)


def default_state_dir() -> Path:
    return Path(os.environ.get("T2V_TESTCLUSTER_STATE") or (b.cache_root() / "state"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(msg: str) -> None:
    print(f"testcluster: {msg}", file=sys.stderr, flush=True)


# ---- certificates (openssl CLI, so no extra Python dependency) ----


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(pki: Path, extra_ip: str | None = None) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3650", "-subj", "/CN=t2v-testcluster-ca", cwd=pki)

    def leaf(name: str, subj: str, san: str | None, usage: str) -> None:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subj, cwd=pki)
        ext = f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
        if san:
            ext += f"subjectAltName={san}\n"
        (pki / f"{name}.ext").write_text(ext)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "3650", "-extfile", f"{name}.ext", cwd=pki)

    serving_san = "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
    if extra_ip:
        serving_san += f",IP:{extra_ip}"
    leaf("apiserver", "/CN=kube-apiserver", serving_san, "serverAuth")
    leaf("admin", "/O=system:masters/CN=t2v-admin", None, "clientAuth")
    leaf("front-proxy-client", "/CN=front-proxy-client", None, "clientAuth")
    leaf("webhook", "/CN=kueue-webhook", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    wh = pki / "webhook-certs"
    wh.mkdir(exist_ok=True)
    (wh / "tls.crt").write_bytes((pki / "webhook.crt").read_bytes())
    (wh / "tls.key").write_bytes((pki / "webhook.key").read_bytes())


def _write_kubeconfig(path: Path, pki: Path, port: int, host: str = "127.0.0.1") -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "t2v-testcluster",
        "clusters": [{"name": "t2v-testcluster", "cluster": {
            "server": f"https://{host}:{port}", "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "t2v-admin", "user": {
            "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": "t2v-testcluster", "context": {"cluster": "t2v-testcluster", "user": "t2v-admin"}}],
    }
    path.write_text(yaml.safe_dump(cfg))


# ---- processes ----


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _start(state: Path, name: str, cmd: list[str]) -> int:
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, cwd=state, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    (state / "pids").mkdir(exist_ok=True)
    (state / "pids" / f"{name}.pid").write_text(str(proc.pid))
    (state / "cmds").mkdir(exist_ok=True)
    (state / "cmds" / f"{name}.sh").write_text(" ".join(cmd) + "\n")
    return proc.pid


def _pids(state: Path) -> dict[str, int]:
    out = {}
    for f in sorted((state / "pids").glob("*.pid")):
        out[f.stem] = int(f.read_text().strip())
    return out


def _ssl_ctx(pki: Path, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt")) if verify else ssl._create_unverified_context()  # noqa: S323
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _get_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:  # noqa: S310 - loopback only
            return r.status == 200
    except Exception:  # noqa: BLE001 - any failure means not ready yet
        return False


def _wait(what: str, check, state: Path, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pid = _pids(state).get(name)
    while time.monotonic() < deadline:
        if check():
            return
        if pid and not _pid_alive(pid):
            raise ClusterError(f"{name} exited during start" + _log_tail(state, name))
        time.sleep(0.2)
    raise ClusterError(f"{what} not ready after {timeout:.0f}s" + _log_tail(state, name))


def _kubectl(state: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(b.binary("kubectl")), "--kubeconfig", str(state / "kubeconfig"), *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
    return p


# ---- manifests read from the Go module cache ----


def _module_dir(module: str, version: str) -> Path:
    p = subprocess.run([b.GO, "mod", "download", "-json", f"{module}@{version}"], cwd=b.cache_root(),
                       env=b._go_env(), capture_output=True, text=True, check=True)
    return Path(json.loads(p.stdout)["Dir"])


def _kueue_manifests(webhook_port: int, ca_b64: str) -> list[dict]:
    """Kueue CRDs and webhook configurations, rewritten to url + caBundle on loopback (as envtest does)."""
    root = _module_dir("sigs.k8s.io/kueue", b.KUEUE_VERSION) / "config" / "components"
    base = f"https://127.0.0.1:{webhook_port}"
    conv = set()
    for patch in (root / "crd" / "patches").glob("webhook_in_*.yaml"):
        conv.add(yaml.safe_load(patch.read_text())["metadata"]["name"])
    docs: list[dict] = []
    for crd_file in sorted((root / "crd" / "bases").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        if crd["metadata"]["name"] in conv:
            crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": f"{base}/convert", "caBundle": ca_b64},
                "conversionReviewVersions": ["v1"]}}
        docs.append(crd)
    for doc in yaml.safe_load_all((root / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        for hook in doc.get("webhooks", []):
            svc = hook["clientConfig"].pop("service")
            hook["clientConfig"] = {"url": base + svc.get("path", "/"), "caBundle": ca_b64}
        docs.append(doc)
    return docs


def _kwok_stages() -> str:
    """kwok's own node and pod stages from its module source: pods complete after the annotated delay."""
    root = _module_dir("sigs.k8s.io/kwok", b.KWOK_VERSION) / "kustomize" / "stage"
    parts = []
    for sub in ("node/fast", "node/heartbeat", "pod/general"):
        kust = yaml.safe_load((root / sub / "kustomization.yaml").read_text())
        for res in kust.get("resources", []):
            parts.append((root / sub / res).read_text())
    return "\n---\n".join(parts)


# The Kueue Configuration t2v recommends for production; its policy keys run here too.
RECOMMENDED_KUEUE_CONFIG = Path(__file__).resolve().parents[2] / "kueue" / "config" / "kueue-manager-config.yaml"
POLICY_KEYS = ("manageJobsWithoutQueueName", "waitForPodsReady", "fairSharing", "admissionFairSharing", "integrations")


def _recommended_kueue_policy() -> dict:
    """kueue/config's scheduling policy (fair sharing, admission fair sharing, waitForPodsReady...),
    so tests and benchmarks run the preemption a real install gets; usage is sampled every second
    instead of every minute so tests see it quickly."""
    cfg = yaml.safe_load(RECOMMENDED_KUEUE_CONFIG.read_text())
    policy = {k: cfg[k] for k in POLICY_KEYS if k in cfg}
    if "admissionFairSharing" in policy:
        policy["admissionFairSharing"] = {**policy["admissionFairSharing"], "usageSamplingInterval": "1s"}
    return policy


def _fixed_path_cert(folder: Path, pki: Path) -> bool:
    """Make sure one of Kueue's fixed cert folders holds a cert; False if we may not write there.

    With internal cert management off, Kueue reads its visibility and metrics serving certs
    from fixed paths it does not let us configure. Nothing verifies them (the APIService skips
    TLS verification, metrics are off), so one self-signed cert shared by every cluster on the
    machine is enough; `down` leaves it in place.
    """
    crt, key = folder / "tls.crt", folder / "tls.key"
    if crt.is_file() and key.is_file():
        return True
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                 "-days", "3650", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 cwd=pki)
    except (OSError, subprocess.CalledProcessError) as e:
        _log(f"cannot write a cert to {folder} ({e})")
        return False
    return True


def _visibility_manifests(port: int) -> list[dict]:
    # The aggregator resolves an ExternalName Service to its name and the APIService port, so
    # this reaches Kueue's visibility server on loopback without Endpoints (which refuse 127.0.0.1).
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "kueue-visibility-server", "namespace": KUEUE_NS},
                         "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}]
    for ver in ("v1beta1", "v1beta2"):
        docs.append({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                     "metadata": {"name": f"{ver}.visibility.kueue.x-k8s.io"},
                     "spec": {"group": "visibility.kueue.x-k8s.io", "version": ver,
                              "groupPriorityMinimum": 100, "versionPriority": 100,
                              "insecureSkipTLSVerify": True,
                              "service": {"name": "kueue-visibility-server", "namespace": KUEUE_NS,
                                          "port": port}}})
    return docs


KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}


def _node(i: int, gpus: int, tainted: bool = False) -> dict:
    """A kwok node; next to a real node it is tainted, so only pods that ask for a fake node land there."""
    name = f"gpu-node-{i}"
    cap = {"cpu": "128", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus), "ephemeral-storage": "7Ti"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {**H100_LABELS, "kubernetes.io/hostname": name, "nvidia.com/gpu.count": str(gpus)}},
            "spec": {"taints": [KWOK_TAINT]} if tainted else {},
            "status": {"capacity": cap, "allocatable": cap}}


def _apply(state: Path, docs: list[dict]) -> None:
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    _kubectl(state, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)


# ---- up / down / status ----


def _load(state: Path) -> Cluster | None:
    f = state / "cluster.json"
    return Cluster(**json.loads(f.read_text())) if f.is_file() else None


def running(state: Path) -> Cluster | None:
    """The cluster in state if every component is alive and the apiserver answers."""
    c = _load(state)
    if not c:
        return None
    pids = _pids(state)
    if not set(c.components) <= set(pids) or not all(_pid_alive(p) for p in pids.values()):
        return None
    if not _get_ok(f"{c.server}/readyz", _ssl_ctx(state / "pki")):
        return None
    return c


# Controllers a real node's pods need on top of what Jobs on kwok need: Services and their endpoints,
# StatefulSets and their volumes, the CA ConfigMap service-account tokens mount, NotReady detection, PDBs.
NODE_CONTROLLERS = ("endpoints-controller,endpointslice-controller,statefulset-controller,"
                    "persistentvolume-binder-controller,root-ca-certificate-publisher-controller,"
                    "node-lifecycle-controller,disruption-controller")
NODE_PORTS = ["kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics", "coredns-health",
              "coredns-ready"]


def up(state: Path, *, nodes: int = 1, gpus_per_node: int = 8, node: bool = False) -> Cluster:
    """Start the control plane (with a real kubelet node when `node`), or return the one running in state."""
    c = running(state)
    if c and c.node == node:
        _log(f"already up (state {state})")
        return c
    if state.exists():
        down(state)
    t0 = time.monotonic()
    state.mkdir(parents=True)
    pki = state / "pki"
    host = "127.0.0.1"
    if node:
        realnode.make_network(state)  # the apiserver listens on the bridge so pods reach it
        host = realnode.NODE_IP
    _make_certs(pki, extra_ip=realnode.NODE_IP if node else None)
    names = ["etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
             "kwok", "kueue-webhook", "kueue-health", "kueue-visibility", *(NODE_PORTS if node else [])]
    ports: dict[str, int] = {}
    for n in names:
        p = free_port()
        while p in ports.values():
            p = free_port()
        ports[n] = p
    c = Cluster(state_dir=str(state), kubeconfig=str(state / "kubeconfig"), ports=ports, nodes=nodes,
                gpus_per_node=gpus_per_node, node=node, host=host)
    (state / "cluster.json").write_text(json.dumps(asdict(c), indent=1))
    _write_kubeconfig(state / "kubeconfig", pki, ports["kube-apiserver"], host)
    bin_ = b.binary

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    _start(state, "etcd", [str(bin_("etcd")), "--data-dir", str(state / "etcd"), "--name", "default",
                           "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                           "--listen-peer-urls", f"http://127.0.0.1:{ports['etcd-peer']}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcd-peer']}",
                           "--initial-cluster", f"default=http://127.0.0.1:{ports['etcd-peer']}",
                           "--unsafe-no-fsync", "--log-level", "warn"])
    _wait("etcd", lambda: _get_ok(f"{etcd_url}/health"), state, "etcd", 60)

    _start(state, "kube-apiserver", [
        str(bin_("kube-apiserver")), "--etcd-servers", etcd_url,
        "--bind-address", host, "--advertise-address", host,
        "--secure-port", str(ports["kube-apiserver"]), "--cert-dir", str(pki),
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"),
        "--service-account-issuer", "https://kubernetes.default.svc",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--service-cluster-ip-range", "10.0.0.0/24", "--authorization-mode", "RBAC",
        # A real node's pods get their service-account token (the controller's in-cluster credentials).
        "--allow-privileged=true", "--disable-admission-plugins",
        "TaintNodesByCondition" if node else "ServiceAccount,TaintNodesByCondition",
        "--enable-aggregator-routing=false",
        # `kubectl logs` and `exec` reach a real node at its address (no DNS name for it on this machine).
        "--kubelet-preferred-address-types", "InternalIP,Hostname",
        "--proxy-client-cert-file", str(pki / "front-proxy-client.crt"),
        "--proxy-client-key-file", str(pki / "front-proxy-client.key"),
        "--requestheader-client-ca-file", str(pki / "ca.crt"),
        "--requestheader-allowed-names", "front-proxy-client",
        "--requestheader-username-headers", "X-Remote-User",
        "--requestheader-group-headers", "X-Remote-Group",
        "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
    ])
    ctx = _ssl_ctx(pki)
    _wait("kube-apiserver", lambda: _get_ok(f"{c.server}/readyz", ctx), state, "kube-apiserver", 120)

    kc = str(state / "kubeconfig")
    _start(state, "kube-controller-manager", [
        str(bin_("kube-controller-manager")), "--kubeconfig", kc, "--leader-elect=false",
        "--bind-address", "127.0.0.1", "--secure-port", str(ports["kube-controller-manager"]),
        "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
        "--controllers", "job-controller,daemonset-controller,namespace-controller,garbage-collector-controller,"
        "serviceaccount-controller,serviceaccount-token-controller,ttl-after-finished-controller,"
        "pod-garbage-collector-controller,replicaset-controller,deployment-controller"
        + ("," + NODE_CONTROLLERS if node else ""),
        *(["--node-monitor-grace-period", "20s"] if node else []),
        "--service-account-private-key-file", str(pki / "sa.key"), "--root-ca-file", str(pki / "ca.crt"),
        "--use-service-account-credentials=false", "--concurrent-job-syncs", "10",
    ])
    _start(state, "kube-scheduler", [
        str(bin_("kube-scheduler")), "--kubeconfig", kc, "--leader-elect=false",
        "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
        "--bind-address", "127.0.0.1", "--secure-port", str(ports["kube-scheduler"]),
    ])
    (state / "kwok-stages.yaml").write_text(_kwok_stages())
    _start(state, "kwok", [
        str(bin_("kwok")), "--kubeconfig", kc, "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
        "--server-address", f"127.0.0.1:{ports['kwok']}", "--node-ip", "127.0.0.1",
        "--config", str(state / "kwok-stages.yaml"),
    ])

    ca_b64 = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    _apply(state, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NS}}])
    _apply(state, _kueue_manifests(ports["kueue-webhook"], ca_b64))
    # Kueue sets up its indexes at start and exits if a CRD is not served yet.
    _kubectl(state, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
    kcfg = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration", "namespace": KUEUE_NS,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['kueue-health']}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": ports["kueue-webhook"], "host": "127.0.0.1", "certDir": str(pki / "webhook-certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "visibilityServer": {"bindAddress": "127.0.0.1", "bindPort": ports["kueue-visibility"]},
    }
    kcfg.update(_recommended_kueue_policy())
    (state / "kueue-config.yaml").write_text(yaml.safe_dump(kcfg))
    kueue_cmd = [str(bin_("kueue")), "--config", str(state / "kueue-config.yaml"), "--kubeconfig", kc,
                 "--zap-log-level", "2"]
    if not _fixed_path_cert(METRICS_CERT_DIR, pki):
        raise ClusterError(f"Kueue cannot start without a cert in {METRICS_CERT_DIR}; create that folder "
                           "writable for this user (or run as root) and try again")
    visibility = _fixed_path_cert(VISIBILITY_CERT_DIR, pki)
    if not visibility:
        _log("visibility API off (Kueue's pending positions come from the DB order instead)")
        kueue_cmd.append("--feature-gates=VisibilityOnDemand=false")
    _start(state, "kueue", kueue_cmd)
    if visibility:
        _apply(state, _visibility_manifests(ports["kueue-visibility"]))
    if nodes:
        _apply(state, [_node(i, gpus_per_node, tainted=node) for i in range(nodes)])

    for name in ("kube-controller-manager", "kube-scheduler"):
        port = ports[name]
        _wait(name, lambda port=port: _get_ok(f"https://127.0.0.1:{port}/healthz", _ssl_ctx(pki, False)),
              state, name, 90)
    _wait("kwok", lambda: _get_ok(f"http://127.0.0.1:{ports['kwok']}/healthz"), state, "kwok", 60)
    _wait("kueue", lambda: _get_ok(f"http://127.0.0.1:{ports['kueue-health']}/readyz"), state, "kueue", 120)

    def nodes_ready() -> bool:
        p = _kubectl(state, "get", "nodes", "-o", "json", check=False)
        if p.returncode != 0:
            return False
        items = json.loads(p.stdout)["items"]
        return len(items) >= nodes and all(
            any(cnd["type"] == "Ready" and cnd["status"] == "True" for cnd in n.get("status", {}).get("conditions", []))
            for n in items)

    _wait("fake GPU nodes", nodes_ready, state, "kwok", 60)
    _wait("kueue webhook", lambda: _webhook_ready(state), state, "kueue", 60)
    if node:
        realnode.start(state, ports, _start, _wait, _get_ok)
        _wait("the real node Ready with 8 nvidia.com/gpu", lambda: _real_node_ready(state), state, "kubelet", 120)
        labels = {**{k: v for k, v in H100_LABELS.items() if k != "type"}, "nvidia.com/gpu.count": "8"}
        _kubectl(state, "label", "node", realnode.NODE_NAME, "--overwrite", *[f"{k}={v}" for k, v in labels.items()])
    _log(f"up in {time.monotonic() - t0:.1f}s; export KUBECONFIG={c.kubeconfig}; logs in {state / 'logs'}")
    return c


def _real_node_ready(state: Path) -> bool:
    p = _kubectl(state, "get", "node", realnode.NODE_NAME, "-o", "json", check=False)
    if p.returncode != 0:
        return False
    n = json.loads(p.stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    return ready and n["status"].get("allocatable", {}).get("nvidia.com/gpu") == "8"


def _webhook_ready(state: Path) -> bool:
    # A dry-run ResourceFlavor create goes through Kueue's webhook (and the conversion path).
    doc = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "t2v-probe"}}
    p = _kubectl(state, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(doc), check=False)
    return p.returncode == 0


def stop(state: Path, names: list[str]) -> None:
    """Stop these recorded processes (SIGTERM to each process group, SIGKILL after 8 s)."""
    pids = {n: p for n, p in _pids(state).items() if n in names}
    for name in names:
        pid = pids.get(name)
        if pid and _pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 8
    for name, pid in pids.items():
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            _log(f"{name} (pid {pid}) ignored SIGTERM; killing")
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def restart(state: Path, name: str) -> int:
    """Start a stopped component again with the command line `up` gave it (fault tests stop the kubelet)."""
    cmd = (state / "cmds" / f"{name}.sh").read_text().split()
    return _start(state, name, cmd)


def down(state: Path) -> None:
    """Stop every process recorded in state (by pid); for a real node also its containers, mounts,
    bridge and iptables rules; then remove state."""
    pids = _pids(state)
    # The node's helpers first, then its containers (no kubelet left to restart them), then containerd.
    stop(state, [n for n in ("t2v-url", "coredns", "kube-proxy", "fakegpu", "kubelet") if n in pids])
    if "containerd" in pids:
        realnode.stop_containers(state)
        stop(state, ["containerd"])
    stop(state, [n for n in reversed(ORDER) if n in pids])
    if (state / "node").is_dir():
        realnode.teardown(state)
    if state.exists():
        import shutil  # noqa: PLC0415

        shutil.rmtree(state, ignore_errors=True)


def status(state: Path) -> int:
    c = _load(state)
    if not c:
        print(f"not up (no {state / 'cluster.json'})")
        return 1
    print(f"state: {state}\nkubeconfig: {c.kubeconfig}\nlogs: {state / 'logs'}")
    ok = True
    pids = _pids(state)
    for name in c.components:
        pid = pids.get(name)
        alive = bool(pid and _pid_alive(pid))
        ok &= alive
        port = c.ports.get(name) or c.ports.get(f"{name}-webhook")
        print(f"  {name:26} pid {pid or '-':>7}  {'running' if alive else 'STOPPED':8} port {port}  "
              f"log {state / 'logs' / (name + '.log')}")
    return 0 if ok else 1
