"""Entry for `t2v controller` and `t2v serve --with-controller`: the cluster-mode controller."""

from __future__ import annotations

from controller.kube.api import KubeJobApi
from controller.kube.reconciler import KubeController
from controller.settings import ControllerSettings
from jobcontract.storage import open_store
from webapp.settings import Settings


def build_controller(settings: Settings) -> KubeController:
    """The dispatcher + watcher for `settings` (extended with the cluster fields from the environment)."""
    cs = settings if isinstance(settings, ControllerSettings) else ControllerSettings(
        **settings.model_dump(exclude_unset=True))
    return KubeController(cs, open_store(cs.objects_url), KubeJobApi(cs.namespace))
