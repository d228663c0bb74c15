"""Node labels the model-cache DaemonSet sets: job pods schedule only where the model is READY."""

from __future__ import annotations

import os


def label_node(node: str, label: str, value: str = "true") -> None:
    """Set `label=value` on `node` with the pod's own (in-cluster) credentials, or the kubeconfig's."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    client.CoreV1Api().patch_node(node, {"metadata": {"labels": {label: value}}})
