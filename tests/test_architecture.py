"""The shape of the code: no import cycle anywhere in ``app``, and the import-linter contracts of
pyproject.toml (the core knows no FastAPI, only ``app.main`` mounts routers, ATSs do not import
each other) hold, so ``make test`` enforces them and not only ``make lint``; and the tests' own
shape: no test module imports another (helpers are in tests/support/, fixtures in conftest.py)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp

from tests.support.paths import REPO


def test_no_module_of_app_imports_itself_through_others() -> None:
    # TYPE_CHECKING imports count too: a cycle hidden behind one is a cycle the day the
    # annotation is needed at run time. No cache: the test reads the tree as it is.
    graph = grimp.build_graph("app", cache_dir=None)
    assert len(graph.modules) > 50  # the real package, not an empty one
    cycles: list[tuple[str, ...]] = []
    # Every cycle has an edge whose target leads back to its source.
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == module:
                cycles.append((module,))
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert cycles == [], "\n".join(" -> ".join(chain) for chain in cycles)


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    # This checkout's app, whatever else is installed in the environment.
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The contracts ran (a config that failed to load would not say this).
    assert "0 broken" in result.stdout
    assert result.stdout.count(" KEPT") >= 6


_LAYERS = ("schemas", "verifiers", "clients", "checks", "workers", "routers", "sources")


def _modules_of(graph: grimp.ImportGraph, source: str) -> set[str]:
    """A source's modules in every layer, by the naming rule: ``app.<layer>.<source>``,
    ``app.<layer>.<source>_<part>`` and their submodules."""
    found = set()
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) >= 3 and parts[1] in _LAYERS:
            name = parts[2]
            if name == source or name.startswith(source + "_"):
                found.add(module)
    return found


def test_no_registered_source_reaches_another_in_any_layer() -> None:
    # Read from the registry, so a new source is held to it without editing a contract.
    from app.sources import REGISTRY

    graph = grimp.build_graph("app", cache_dir=None)
    groups = {name: _modules_of(graph, name) for name in REGISTRY}
    assert all(groups.values()), groups
    chains = []
    for name, modules in groups.items():
        for other, others in groups.items():
            if other == name:
                continue
            for importer in sorted(modules):
                for imported in sorted(others):
                    chain = graph.find_shortest_chain(importer=importer, imported=imported)
                    if chain is not None:
                        chains.append(" -> ".join(chain))
    assert chains == [], "\n".join(chains)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from tests.x import test_y`` imports a module too.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    # Shared helpers live in tests/support/ and shared fixtures in conftest.py files, which
    # pytest loads itself: a test module imported by another runs its module-level code twice
    # and ties two areas of the map together.
    files = sorted((REPO / "tests").rglob("*.py"))
    assert len(files) > 60  # the real suite
    reached = []
    for path in files:
        for module in _imported_modules(path):
            last = module.rsplit(".", 1)[-1]
            if module.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                reached.append(f"{path.relative_to(REPO)} imports {module}")
    assert reached == [], "\n".join(reached)
