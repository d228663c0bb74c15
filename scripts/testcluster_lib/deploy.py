"""`scripts/testcluster deploy`: kueue/ and manifests/overlays/testnode on the real test node, as an
operator would apply them, then a loopback URL that reaches the webapp Service and an admin API key.

The base's PostgreSQL and MinIO StatefulSets claim volumes; this plane has no provisioner, so `deploy`
makes one hostPath PersistentVolume per claim under the state folder (what a cluster's storage class
would do). The loopback URL is a socat process on 127.0.0.1 forwarding to the Service's cluster IP, so
kube-proxy picks a webapp pod per connection, as a load balancer in front of a cluster would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from . import cluster as cl

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "manifests" / "overlays" / "testnode"
NS = "t2v"
ROLLOUTS = ("statefulset/t2v-postgres", "statefulset/t2v-minio", "deployment/t2v-webapp",
            "deployment/t2v-controller", "daemonset/t2v-model-cache")


def _volumes(state: Path, docs: list[dict]) -> list[dict]:
    """One hostPath PersistentVolume per StatefulSet claim, sized as the claim asks, open to the pod's uid."""
    pvs = []
    for d in docs:
        if d["kind"] != "StatefulSet":
            continue
        for tpl in d["spec"].get("volumeClaimTemplates", []):
            claim = f"{tpl['metadata']['name']}-{d['metadata']['name']}-0"
            folder = state / "volumes" / claim
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)  # hostPath volumes get no fsGroup; the server makes its own 0700 subfolder
            pvs.append({"apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": f"t2v-test-{claim}", "labels": {"app.kubernetes.io/part-of": "t2v"}},
                        "spec": {"capacity": tpl["spec"]["resources"]["requests"],
                                 "accessModes": tpl["spec"]["accessModes"],
                                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                                 "claimRef": {"namespace": NS, "name": claim},
                                 "hostPath": {"path": str(folder), "type": "Directory"}}})
    return pvs


def deploy(state: Path, *, timeout: float = 600) -> dict:
    """Apply kueue/ and the testnode overlay, wait for every rollout; returns {'url', 'api_key'}."""
    c = cl.running(state)
    if not c or not c.node:
        raise cl.ClusterError(f"no test cluster with a real node in {state}: run `scripts/testcluster up --node`")
    t0 = time.monotonic()
    cl._kubectl(state, "apply", "--server-side", "-f", str(REPO / "kueue"))
    docs = [d for d in yaml.safe_load_all(cl._kubectl(state, "kustomize", str(OVERLAY)).stdout) if d]
    cl._apply(state, _volumes(state, docs))
    cl._kubectl(state, "apply", "-k", str(OVERLAY))
    for what in ROLLOUTS:
        left = max(10, timeout - (time.monotonic() - t0))
        p = cl._kubectl(state, "-n", NS, "rollout", "status", what, f"--timeout={int(left)}s", check=False)
        if p.returncode != 0:
            raise cl.ClusterError(f"{what} did not roll out: {p.stderr.strip() or p.stdout.strip()}\n"
                                  + _pod_report(state))
    out = {"url": _start_url_proxy(state), "api_key": _api_key(state)}
    (state / "deploy.json").write_text(json.dumps(out))
    cl._log(f"deployed in {time.monotonic() - t0:.0f}s; T2V_URL={out['url']}")
    return out


def _pod_report(state: Path) -> str:
    """What a person would look at first: pods, their states, and recent warnings."""
    pods = cl._kubectl(state, "-n", NS, "get", "pods", "-o", "wide", check=False).stdout
    events = cl._kubectl(state, "-n", NS, "get", "events", "--field-selector", "type=Warning",
                         "--sort-by", ".lastTimestamp", check=False).stdout
    return f"--- pods ---\n{pods}\n--- warnings ---\n" + "\n".join(events.splitlines()[-20:])


def _start_url_proxy(state: Path) -> str:
    ip = cl._kubectl(state, "-n", NS, "get", "service", "t2v-webapp", "-o", "jsonpath={.spec.clusterIP}").stdout
    port = cl.free_port()
    cl.stop(state, ["t2v-url"])
    cl._start(state, "t2v-url", ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:{ip}:80"])
    url = f"http://127.0.0.1:{port}"
    cl._wait("T2V_URL", lambda: cl._get_ok(f"{url}/readyz"), state, "t2v-url", 60)
    return url


def _api_key(state: Path) -> str:
    """An admin key for the default tenant, made in a webapp pod (`t2v keys create`, printed once)."""
    p = cl._kubectl(state, "-n", NS, "exec", "deploy/t2v-webapp", "--", "t2v", "keys", "create", "--tenant",
                    "default", "--admin", "--name", "testcluster")
    return p.stdout.strip().splitlines()[-1]


def env_lines(state: Path) -> list[str]:
    """The `export` lines for `scripts/testcluster env` once deployed."""
    f = state / "deploy.json"
    if not f.is_file():
        return []
    d = json.loads(f.read_text())
    return [f"export T2V_URL={d['url']}", f"export T2V_API_KEY={d['api_key']}"]

