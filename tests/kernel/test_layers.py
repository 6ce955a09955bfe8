"""Dependencies point one way: cli → api, workers → workflows, activities → the kernel (conveyor).

Read from the source's import statements, so a wrong-way import fails here before it tangles the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from workers.pipelines import PIPELINES as MANIFESTS

ROOT = Path(__file__).resolve().parents[2]
#: The pipelines Conveyor runs (their manifests are listed); one still being built joins when it is listed.
PIPELINES = sorted(p.name for p in MANIFESTS)
#: Pipelines with a contract, listed or being built: the import rules hold for all of them.
CONTRACTS = sorted(p.name for p in (ROOT / "activities").iterdir() if (p / "contract.py").exists())


def _imports(package: str) -> dict[str, set[str]]:
    """Every module a package's files import (absolute names), by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for path, names in _imports(package).items():
        exempt = {n for n in names if any(n == a or n.startswith(f"{a}.") for a in allowed)}
        wrong = sorted(n for n in names - exempt if n.split(".")[0] in forbidden)
        if wrong:
            bad[path] = wrong
    return bad


def test_the_kernel_imports_nothing_above_it() -> None:
    assert _offenders("conveyor", ("api", "cli", "workers", "workflows", "activities")) == {}


def test_activities_never_import_workflows_the_api_the_workers_or_the_cli() -> None:
    assert _offenders("activities", ("api", "cli", "workers", "workflows")) == {}


def test_workflows_import_their_own_pipeline_and_the_kernel_only() -> None:
    for path, names in _imports("workflows").items():
        pipeline = Path(path).stem
        wrong = sorted(
            n
            for n in names
            if n.split(".")[0] in ("api", "cli", "workers")
            or (n.split(".")[0] == "activities" and n.split(".")[1:2] != [pipeline])
            or n.endswith(".worker")
        )
        assert wrong == [], path


def test_the_api_starts_workflows_by_name_and_never_imports_them_or_the_worker_side() -> None:
    offenders = _offenders("api", ("cli", "workflows", "workers"), allowed=("workers.pipelines",))
    assert offenders == {}
    worker_side = {p: sorted(n for n in names if n.endswith(".worker")) for p, names in _imports("api").items()}
    assert {p: n for p, n in worker_side.items() if n} == {}


def test_workers_never_import_the_api_or_the_cli() -> None:
    assert _offenders("workers", ("api", "cli")) == {}


def test_every_listed_pipeline_has_a_contract() -> None:
    assert set(PIPELINES) <= set(CONTRACTS)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_each_pipeline_lives_in_the_same_places(pipeline: str) -> None:
    expected = [
        f"activities/{pipeline}/contract.py",
        f"activities/{pipeline}/models.py",
        f"activities/{pipeline}/worker.py",
        f"workflows/{pipeline}.py",
        f"api/routes/{pipeline}.py",
        f"cli/{pipeline}.py",
        f"tests/{pipeline}",
    ]
    assert [p for p in expected if not (ROOT / p).exists()] == []
