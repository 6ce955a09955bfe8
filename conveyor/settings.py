"""All configuration, read once from ``CONVEYOR_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Conveyor has; the README's configuration table is generated from these fields."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", env_file=".env", extra="ignore")

    # paths
    var_dir: Path = Field(Path("var"), description="Folder for the embedded stack's state (DBs, blobs, logs).")
    # temporal
    temporal_address: str = Field("127.0.0.1:7233", description="Temporal frontend gRPC address.")
    temporal_namespace: str = Field("default", description="Temporal namespace.")
    temporal_ui_port: int = Field(8233, description="Web UI port of the embedded dev server.")
    temporal_ui_url: str = Field(
        "http://127.0.0.1:8233", description="Base URL of the Temporal Web UI used in printed links."
    )
    temporal_db_filename: str = Field(
        "", description="SQLite file of the embedded dev server (default: <var_dir>/temporal.db)."
    )
    # app data
    database_url: str = Field(
        "", description="SQLAlchemy async URL (default: sqlite+aiosqlite:///<var_dir>/conveyor.db)."
    )
    blob_url: str = Field(
        "", description="Blob store: a folder path or file:// URL (default <var_dir>/blobs), or s3://bucket/prefix."
    )
    s3_endpoint_url: str = Field("", description="Endpoint of an S3-compatible server (empty: AWS).")
    # API
    api_host: str = Field("127.0.0.1", description="Address the API binds to.")
    api_port: int = Field(8000, description="Port the API binds to.")
    api_public_url: str = Field(
        "", description="Base URL clients use to reach the API (default http://<api_host>:<api_port>)."
    )
    # logging
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_json: bool | None = Field(None, description="JSON logs (default: when stderr is not a terminal).")
    # workers
    worker_queues: list[str] = Field(
        default_factory=list, description="Queues `conveyor worker` serves when none are given (default: all)."
    )
    worker_legacy_queues: bool = Field(
        False,
        description="Also serve each queue's name from before queues were namespaced (render, crawl, …): turn on "
        "while runs started by an older Conveyor are still running, so they finish.",
    )
    # analysis pipeline
    max_upload_bytes: int = Field(200 * 1024 * 1024, description="Largest accepted input file, in bytes.")
    max_files_per_task: int = Field(10, description="Most files one analysis task accepts.")
    local_user: str = Field("local", description="User the CLI acts as when --user is not given.")
    local_user_credits: int = Field(1000, description="Credits granted when the CLI's local user is created.")
    # crawl pipeline
    chromium_path: str = Field("/usr/bin/chromium", description="Chromium executable Playwright drives.")
    chromium_args: list[str] = Field(
        default_factory=list, description="Extra Chromium flags (JSON list), added to Conveyor's defaults."
    )
    crawl_user_agent: str = Field(
        "ConveyorBot/0.1 (+https://github.com/conveyor)", description="User agent of the crawler (robots.txt too)."
    )
    crawl_retention_days: float = Field(30.0, description="Crawl sessions older than this are deleted daily.")
    linear_api_key: str = Field("", description="Linear API key; when set (with the team), tickets go to Linear.")
    linear_team_id: str = Field("", description="Linear team id new issues are filed in.")
    linear_api_url: str = Field("https://api.linear.app/graphql", description="Linear GraphQL endpoint.")
    # persona pipeline
    persona_data_root: str = Field(
        "", description="Folder with data/<persona>/… and personas/<persona>/profile.md (default <var_dir>/personas)."
    )
    chroma_path: str = Field("", description="Embedded ChromaDB folder (default <var_dir>/chroma).")
    chroma_url: str = Field("", description="ChromaDB server URL (e.g. http://chroma:8000); empty: embedded.")
    # LLM steps (an OpenAI-compatible endpoint; unset: deterministic local rules)
    llm_base_url: str = Field("", description="OpenAI-compatible API base URL (e.g. http://host/v1); empty: no LLM.")
    llm_api_key: str = Field("", description="API key sent as a Bearer token to the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the LLM endpoint.")
    # video pipeline (seed 004)
    video_temp_dir: str = Field(
        "", description="Working folder of video jobs, cleaned daily (default <var_dir>/video-tmp; seed TEMP_DIR)."
    )
    video_cleanup_age_days: float = Field(7.0, description="Temporary video files older than this are deleted daily.")
    video_max_temp_gb: float = Field(50.0, description="Cap on the video working folder; oldest files go first.")
    whisper_cache_dir: str = Field(
        "", description="Folder where the Whisper base model is assembled once (default <var_dir>/models)."
    )
    whisper_checkpoint: str = Field(
        "", description="openai-whisper .pt checkpoint; when set, captions use openai-whisper, not faster-whisper."
    )
    resource_warn_percent: float = Field(
        90.0, description="CPU, memory, disk or GPU use above this percent logs a warning (monitor_resources)."
    )
    resource_retention_hours: float = Field(24.0, description="Resource samples older than this are deleted.")

    @property
    def temporal_db_path(self) -> Path:
        """The embedded dev server's SQLite file."""
        return Path(self.temporal_db_filename) if self.temporal_db_filename else self.var_dir / "temporal.db"

    @property
    def database_url_resolved(self) -> str:
        """The app database URL with the SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'conveyor.db').resolve()}"

    @property
    def blob_url_resolved(self) -> str:
        """The blob store URL with the local-folder default filled in."""
        return self.blob_url or str((self.var_dir / "blobs").resolve())

    @property
    def persona_data_root_resolved(self) -> Path:
        """The persona data root with its default filled in."""
        root = Path(self.persona_data_root) if self.persona_data_root else self.var_dir / "personas"
        return root.resolve()

    @property
    def chroma_path_resolved(self) -> Path:
        """The embedded ChromaDB folder with its default filled in."""
        return Path(self.chroma_path) if self.chroma_path else self.var_dir / "chroma"

    @property
    def video_temp_dir_resolved(self) -> Path:
        """The video working folder with its default filled in."""
        return (Path(self.video_temp_dir) if self.video_temp_dir else self.var_dir / "video-tmp").resolve()

    @property
    def whisper_cache_dir_resolved(self) -> Path:
        """The Whisper model cache folder with its default filled in."""
        return (Path(self.whisper_cache_dir) if self.whisper_cache_dir else self.var_dir / "models").resolve()

    @property
    def api_url(self) -> str:
        """Base URL of the API as clients see it."""
        return self.api_public_url or f"http://{self.api_host}:{self.api_port}"

    def workflow_ui_url(self, workflow_id: str) -> str:
        """Web UI link to a workflow."""
        return f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
