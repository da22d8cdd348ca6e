"""Helpers shared by the benchmark processes: machine facts, RSS/CPU probes, result I/O."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from typing import Any

#: Prefix of the one line a benchmark process prints with its result.
RESULT_PREFIX = "BENCH-RESULT "
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size of a process in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE / (1 << 20)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    return time.process_time()


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def emit(result: dict[str, Any]) -> None:
    """Print this process's result as one line for the orchestrator."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The result printed by :func:`emit`, or ``None`` if there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted

    try:
        from importlib.metadata import version

        sdk = version("lightstreamer-client-lib")
    except Exception:
        sdk = None
    try:
        from txlightstreamer import __version__ as ours
    except Exception:
        ours = None
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            mem_total = round(int(f.readline().split()[1]) / (1 << 20), 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": mem_total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "twisted": twisted.__version__,
        "txlightstreamer": ours,
        "lightstreamer_client_lib": sdk,
    }
