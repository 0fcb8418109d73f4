"""Shared fixtures: the reference config, as the controller and topology use it."""
from __future__ import annotations

import pathlib
import tomllib

import pytest

from msp_controller.model.config import MspConfig, parse_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE_CONFIG = ROOT / "etc" / "reference.toml"


@pytest.fixture
def reference_data() -> dict:
    with open(REFERENCE_CONFIG, "rb") as handle:
        return tomllib.load(handle)


@pytest.fixture
def config(reference_data: dict) -> MspConfig:
    return parse_config(reference_data)
