"""The machine a benchmark ran on, for its results file."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any


def machine(*packages: str) -> dict[str, Any]:
    """CPU, cores, memory, Python, the versions of `packages`, the platform."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    meminfo = Path("/proc/meminfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal"))
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
    }
    for package in packages:
        info[package.replace("-", "_")] = importlib.metadata.version(package)
    info["platform"] = platform.platform()
    return info
