"""Fixtures of the engine's unit tests: a demo-shaped project and its World (tests/unit/world.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promoflow import demo
from promoflow.project import Project
from promoflow.sources import oci_layout
from tests.unit.world import World


@pytest.fixture
def project(tmp_path: Path) -> Project:
    demo.write_config(tmp_path)
    demo.build_sandbox(tmp_path)
    oci_layout.publish(tmp_path / ".promoflow" / "demo" / "oci" / "web", "1.2.0")
    return Project.load(tmp_path / "promotions.yaml")


@pytest.fixture
def world(project: Project) -> World:
    return World(project)
