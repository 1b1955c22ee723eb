"""Sort a py-spy profile of the API (raw, collapsed stacks) into the parts of an event's CPU.

    py-spy record --pid "$(pgrep -f 'app.cli api --port')" --rate 250 --nonblocking \\
        --format raw -o api-profile.txt
    python -m bench.profile_parts api-profile.txt

Each sample goes to the first part, in the order below, that a frame anywhere in its stack
names (the recording and the route's own work); a sample naming none of them goes by its
innermost frame (the request context, Starlette and FastAPI, the server and the event loop).
Start-up samples (imports) are left out. Prints the shares, then the functions with the most
own time (their own code, C calls they make included).
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Iterable
from pathlib import Path

# (part, markers): a frame "names" a part when its text holds one of the markers.
ANYWHERE: list[tuple[str, tuple[str, ...]]] = [
    (
        "recording: PostgreSQL statement (SQLAlchemy + asyncpg)",
        ("insert_many_alone", "run_bounded", "asyncpg/", "sqlalchemy/"),
    ),
    (
        "recording: Redis publish",
        (
            "Queue.enqueue",
            "Queue._enqueue",
            "Queue._run_script",
            "redis/",
            "app/intake/publisher.py",
        ),
    ),
    (
        "recording: intake + group commit",
        ("Intake.", "GroupCommit", "group_commit.py", "app/platform/ids.py"),
    ),
    ("route: signature check", ("app/verifiers/", "hmac.py")),
    ("route: JSON parse + pydantic model", ("parse_json", "app/schemas/", "pydantic")),
    (
        "route: body read, caps, guard, connection lookup",
        (
            "read_raw",
            "capped",
            "guarded",
            "tenant_config",
            "app/intake/connections.py",
            "app/intake/guard.py",
            "Request.stream",
        ),
    ),
    ("route: the rest (answer, dedupe key, handler)", ("app/routers/common.py", "receive_event")),
]
INNERMOST: list[tuple[str, tuple[str, ...]]] = [
    ("request context middleware", ("app/routers/request_context.py", "structlog/")),
    (
        "Starlette/FastAPI middleware, routing, dispatch, Request/Response objects",
        ("starlette/", "fastapi/", "app/routers/dispatch.py"),
    ),
    (
        "uvicorn protocol, socket writes, event loop",
        ("uvicorn/", "app/server.py", "asyncio/", "runners.py", "httptools", "uvloop"),
    ),
]
OTHER = "other"
STARTUP = ("_find_and_load", "<module>) (", "freeze_startup_heap")


def samples(path: Path) -> Iterable[tuple[list[str], int]]:
    """(frames outermost first, count) per line of a py-spy raw profile."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def part_of(frames: list[str]) -> str:
    for part, markers in ANYWHERE:
        if any(marker in frame for frame in frames for marker in markers):
            return part
    innermost = frames[-1]
    for part, markers in INNERMOST:
        if any(marker in innermost for marker in markers):
            return part
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=15, help="functions by own time to list")
    args = parser.parse_args()
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in samples(args.profile):
        if any(marker in frame for frame in frames for marker in STARTUP):
            continue
        total += count
        parts[part_of(frames)] += count
        own[frames[-1]] += count
    print(f"{total} samples")
    print("| part of an event's CPU in the API | share |\n|---|---:|")
    for part, count in parts.most_common():
        print(f"| {part} | {100 * count / total:.1f} % |")
    print("\n| own time | function |\n|---:|---|")
    for function, count in own.most_common(args.top):
        print(f"| {100 * count / total:.1f} % | `{function}` |")


if __name__ == "__main__":
    main()
