"""Finding FalkorDB servers that a test left running (every test must stop what it starts)."""

from __future__ import annotations

from pathlib import Path

import psutil


def falkordb_processes_under(path: Path) -> list[psutil.Process]:
    """Live redis-server (FalkorDB) processes whose working directory (their data dir) lies under `path`."""
    root = path.resolve()
    found = []
    for process in psutil.process_iter(["name", "status"]):
        if process.info["name"] != "redis-server" or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if Path(process.cwd()).is_relative_to(root):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
