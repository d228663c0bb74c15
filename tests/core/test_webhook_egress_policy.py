"""The NetworkPolicy that lets webhooks out agrees with the addresses the controller refuses itself
(core/webhook_targets.py): any port, but none of the private or internal ranges."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from core.webhook_targets import blocked

POLICIES = Path(__file__).resolve().parents[2] / "manifests/base/networkpolicies.yaml"


def _policy(name: str) -> dict:
    return next(d for d in yaml.safe_load_all(POLICIES.read_text()) if d and d["metadata"]["name"] == name)


def test_webhooks_leave_on_any_port_for_public_addresses_only() -> None:
    spec = _policy("webhooks-egress")["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "t2v-controller"}}
    [rule] = spec["egress"]
    assert "ports" not in rule  # the port a tenant's URL names
    blocks = [peer["ipBlock"] for peer in rule["to"]]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    for b in blocks:
        for cidr in b["except"]:
            net = ipaddress.ip_network(cidr)
            assert blocked(str(net.network_address)) and blocked(str(net.broadcast_address)), cidr
    for public in ("8.8.8.8", "93.184.216.34", "2001:4860:4860::8888"):
        assert not blocked(public)
        assert not any(ipaddress.ip_address(public) in ipaddress.ip_network(c) for b in blocks for c in b["except"])
    for internal in ("10.1.2.3", "172.20.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "127.0.0.1", "fd00::1"):
        assert any(ipaddress.ip_address(internal) in ipaddress.ip_network(c) for b in blocks for c in b["except"]
                   if ipaddress.ip_network(c).version == ipaddress.ip_address(internal).version), internal
