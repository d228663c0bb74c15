"""Which models the API accepts here (the registry knows them all: jobimage/models/)."""

from __future__ import annotations

from core.settings import Backend, Settings
from jobimage.model_folder import READY_NAME as READY_MARKER
from jobimage.models import KNOWN_MODELS  # the registry: one module per model


def available_models(settings: Settings) -> list[str]:
    """`T2V_MODELS` if set; else tiny plus every model folder with a READY marker (local backend),
    or both known models in cluster mode (the weights live on the GPU nodes, not here)."""
    if settings.models:
        return list(settings.models)
    if settings.backend == Backend.kubernetes:
        return list(KNOWN_MODELS)
    found = ["tiny"]
    for name in KNOWN_MODELS:
        if name != "tiny" and (settings.models_path / name / READY_MARKER).is_file():
            found.append(name)
    return found
