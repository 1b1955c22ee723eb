"""CPU time and memory of process trees, read from /proc (Linux).

CPU seconds are what a process tree consumed, whoever else shares the machine: wall-clock
throughput moves with the load of other work, CPU per event much less so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    return text.rsplit(")", 1)[1].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(pids: Iterable[int]) -> list[int]:
    """``pids`` and every live descendant of them."""
    children = _children_map()
    out: list[int] = []
    todo = [p for p in pids if Path(f"/proc/{p}").exists()]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of the trees rooted at ``pids``.

    Each live process counts its own time plus that of its exited, reaped children
    (cutime/cstime), so short-lived PostgreSQL backends are not lost and nothing counts twice.
    """
    ticks = 0
    for pid in tree(pids):
        fields = _stat(pid)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 after the name.
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / _TICK


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of the trees rooted at ``pids``."""
    total = 0
    for pid in tree(pids):
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += pages * _PAGE
    return total
