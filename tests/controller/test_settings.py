"""Controller settings that are checked at start-up: a bad value names its variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.main import serve_metrics
from controller.metrics import ControllerMetrics
from controller.settings import ControllerSettings


@pytest.mark.parametrize("value", ["8080", "0.0.0.0", "0.0.0.0:http", "0.0.0.0:70000", ":8080"])
def test_a_bad_metrics_address_names_the_variable(value: str, tmp_path) -> None:
    with pytest.raises(ValidationError, match="T2V_METRICS_ADDRESS"):
        ControllerSettings(data_dir=tmp_path, metrics_address=value)


@pytest.mark.parametrize("value", ["0.0.0.0:8080", "127.0.0.1:0", "[::]:9000", ""])
def test_metrics_addresses_accepted(value: str, tmp_path) -> None:
    assert ControllerSettings(data_dir=tmp_path, metrics_address=value).metrics_address == value


def test_an_empty_address_serves_nothing() -> None:
    assert serve_metrics("", ControllerMetrics().registry) is None
