"""The model registry: each model one module with a torch-free spec, plus its loader and generator for the pod.

The service reads specs only (`spec_for`); importing this package does not import torch.
"""

from __future__ import annotations

from jobimage.models.mochi import MOCHI
from jobimage.models.spec import ModelSpec
from jobimage.models.tiny import TINY

SPECS: dict[str, ModelSpec] = {s.name: s for s in (MOCHI, TINY)}
KNOWN_MODELS = tuple(SPECS)


def spec_for(name: str) -> ModelSpec:
    """The spec of model `name`; a model named only in T2V_MODELS is taken to be a Mochi."""
    return SPECS.get(name, MOCHI)
