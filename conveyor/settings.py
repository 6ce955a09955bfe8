"""All configuration, read once from ``CONVEYOR_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    # payload encryption (conveyor/codec.py) and the codec server the Web UI decodes through
    payload_keys: SecretStr | None = Field(
        None,
        description="Payload encryption keys, `id:base64` AES-256 keys separated by commas; the first encrypts, "
        "all decrypt (rotation). Unset: CONVEYOR_PAYLOAD_KEY_FILE, else a local install's <var_dir>/payload-keys.",
    )
    payload_key_file: str = Field(
        "", description="File of payload keys, one `id:base64` per line, first is current (instead of the setting)."
    )
    codec_token: SecretStr | None = Field(
        None,
        description="Operator token of the codec server (/codec): `Authorization: Bearer` or the /codec/login "
        "cookie. Unset: CONVEYOR_CODEC_TOKEN_FILE, else a local install's <var_dir>/codec-token; else disabled.",
    )
    codec_token_file: str = Field("", description="File holding the codec server's operator token.")
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
    # API limits (checked before a body is read; one API process keeps its own counters)
    max_json_bytes: int = Field(
        1_000_000, description="Largest request body of a non-upload route (JSON), in bytes: 413 above it."
    )
    max_codec_bytes: int = Field(
        4_000_000,
        description="Largest request body of the codec server (/codec/*), in bytes: 413 above it. Temporal payloads "
        "reach 2 MB, about 2.7 MB as base64 in the codec's JSON.",
    )
    rate_limit_per_minute: float = Field(
        600.0, description="Requests per minute each API key may make on average (token bucket refill): 429 above."
    )
    rate_limit_burst: int = Field(120, description="Requests an API key may make at once before the rate applies.")
    sse_max_streams_per_key: int = Field(
        5, description="Concurrent `GET /api/workflows/{id}/events` streams per API key: 429 above it."
    )
    sse_poll_interval_s: float = Field(
        2.0, description="How often an event stream asks Temporal for a workflow's progress, in seconds."
    )
    health_cache_ttl_s: float = Field(
        10.0, description="`/api/health` answers from one probe of the DB, Temporal and queues for this many seconds."
    )
    # quotas and credits (every start path, kernel admission)
    max_running_per_user: dict[str, int] = Field(
        default_factory=dict,
        description='Per-user cap on runs under way per pipeline, a JSON map such as {"crawl": 2, "video": 1}; '
        "pipelines not named keep their manifest's default (analysis 5, crawl 3, persona 2, video 2): 429 above.",
    )
    api_limit_concurrency: int = Field(
        1000, description="Connections and tasks the API serves at once before answering 503 (uvicorn)."
    )
    api_max_incomplete_event_bytes: int = Field(
        16 * 1024, description="Largest request line plus headers the API accepts, in bytes (uvicorn h11)."
    )
    api_keep_alive_s: int = Field(5, description="Seconds an idle keep-alive connection to the API stays open.")
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
    analysis_work_dir: str = Field(
        "",
        description="Scratch folder of analysis workers: conversions, agents, DuckDB spill (default <var_dir>/"
        "analysis-work).",
    )
    analysis_duckdb_memory_mb: int = Field(
        1024, gt=0, description="DuckDB memory_limit of every analysis connection, in MiB (beyond it DuckDB spills)."
    )
    analysis_duckdb_threads: int = Field(2, gt=0, description="DuckDB threads of every analysis connection.")
    analysis_duckdb_max_temp_mb: int = Field(
        10240, gt=0, description="DuckDB max_temp_directory_size of every analysis connection (spill space), in MiB."
    )
    analysis_json_sample_records: int = Field(
        10_000, gt=0, description="JSON/NDJSON records read to infer column types (keys are still read in full)."
    )
    analysis_xlsx_max_uncompressed_bytes: int = Field(
        512 * 1024 * 1024,
        gt=0,
        description="Largest total uncompressed size of an xlsx workbook (from its ZIP headers), in bytes.",
    )
    analysis_xlsx_max_ratio: float = Field(
        100.0, gt=1, description="Largest compression ratio of a ZIP entry of an xlsx workbook (zip bombs: 1000+)."
    )
    analysis_xlsx_max_cells: int = Field(
        10_000_000, gt=0, description="Most cells (rows x columns) read from a workbook's first worksheet."
    )
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
    chromium_sandbox: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Chromium's sandbox: auto runs it whenever the worker is not root (root needs --no-sandbox), "
        "on always (fails as root), off never (not recommended: a renderer exploit then owns the worker).",
    )
    crawl_allow_private_networks: bool = Field(
        False,
        description="Let crawls reach loopback, private (RFC 1918), link-local, CGNAT, unique-local and metadata "
        "addresses (off: such URLs are refused with 400 URL_NOT_ALLOWED and never connected to).",
    )
    crawl_allowed_hosts: list[str] = Field(
        default_factory=list,
        description='Hosts crawls may reach even on a denied address, a JSON list of exact "host" or "host:port" '
        'entries (e.g. ["127.0.0.1:8080", "intranet.local"]).',
    )
    crawl_only_allowed_hosts: bool = Field(
        False,
        description="Crawl only the hosts in CONVEYOR_CRAWL_ALLOWED_HOSTS: any other host is refused before it is "
        "even looked up (a crawler kept to an intranet's staging sites; the test suite runs this way).",
    )
    demo_site_port: int = Field(
        8765, description="Port on 127.0.0.1 where `conveyor demo` serves the sample site it crawls."
    )
    crawl_retention_days: float = Field(30.0, description="Crawl sessions older than this are deleted daily.")
    crawl_max_bugs: int = Field(200, ge=1, description="Bugs recorded per crawl session; later new bugs are dropped.")
    crawl_max_screenshots: int = Field(50, ge=0, description="Bug screenshots taken per crawl session.")
    crawl_max_tickets: int = Field(25, ge=0, description="Tickets filed per crawl session.")
    crawl_max_link_checks: int = Field(2000, ge=0, description="Link checks (HEAD/GET) made per crawl session.")
    crawl_ticket_min_severity: Literal["critical", "high", "medium", "low"] = Field(
        "medium", description="Bugs below this severity get no ticket and no screenshot (they stay in the API)."
    )
    crawl_host_delay_s: float = Field(
        0.5, ge=0, description="Least seconds between two page visits to one host in one crawl session."
    )
    crawl_max_crawl_delay_s: float = Field(
        10.0, ge=0, description="Cap on a site's robots.txt Crawl-delay (seconds) the crawler honours."
    )
    linear_api_key: SecretStr | None = Field(
        None, description="Linear API key; when set (with the team), tickets go to Linear."
    )
    linear_team_id: str = Field("", description="Linear team id new issues are filed in.")
    linear_api_url: str = Field("https://api.linear.app/graphql", description="Linear GraphQL endpoint.")
    # persona pipeline
    persona_data_root: str = Field(
        "", description="Folder of every persona's documents, <owner>/<persona>/… (default <var_dir>/personas)."
    )
    chroma_path: str = Field("", description="Embedded ChromaDB folder (default <var_dir>/chroma).")
    chroma_url: str = Field("", description="ChromaDB server URL (e.g. http://chroma:8000); empty: embedded.")
    # LLM steps (an OpenAI-compatible endpoint; unset: deterministic local rules)
    llm_base_url: str = Field("", description="OpenAI-compatible API base URL (e.g. http://host/v1); empty: no LLM.")
    llm_api_key: SecretStr | None = Field(None, description="API key sent as a Bearer token to the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the LLM endpoint.")
    # video pipeline (seed 004)
    video_temp_dir: str = Field(
        "", description="Working folder of video jobs, cleaned daily (default <var_dir>/video-tmp; seed TEMP_DIR)."
    )
    video_cleanup_age_days: float = Field(7.0, description="Temporary video files older than this are deleted daily.")
    video_max_temp_gb: float = Field(50.0, description="Cap on the video working folder; oldest files go first.")
    # video budgets: a job over any of them is refused (400 BUDGET_EXCEEDED) before anything starts
    video_max_input_seconds: float = Field(
        7200.0, gt=0, description="Longest media file (probed duration) a video job may read; longer uploads refused."
    )
    video_max_output_seconds: float = Field(
        3600.0, gt=0, description="Most seconds one video job may produce: render, transcodes and captions together."
    )
    video_max_pixel_seconds: float = Field(
        1.2e11,
        gt=0,
        description="Most output seconds × width × height × fps one video job may encode (1 h of 1080p30 ≈ 2.2e11).",
    )
    video_max_clips: int = Field(20, ge=1, description="Most clips one render timeline may join.")
    video_max_frame_pixels: int = Field(
        3840 * 2160, ge=1, description="Largest output frame, width × height in pixels (default 4K UHD)."
    )
    video_max_fps: float = Field(60.0, gt=0, description="Highest output frame rate; faster uploads are refused.")
    video_max_bitrate_kbps: int = Field(50_000, ge=1, description="Highest video bitrate a job may ask for.")
    video_max_output_bytes: int = Field(
        2 * 1024**3, ge=1, description="FFmpeg -fs on every video output: a job whose file reaches it fails."
    )
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
    # attribution pipeline (seed 004's ML service: HubSpot webhooks, fatigue, winner index)
    hubspot_client_secret: SecretStr | None = Field(
        None,
        description="The HubSpot app's client secret: it keys the webhook signatures (unset: POST /webhooks/hubspot "
        "answers 503 WEBHOOK_NOT_CONFIGURED).",
    )
    public_url: str = Field(
        "",
        description="Scheme and host HubSpot calls (e.g. https://conveyor.example.com) when the API runs behind a "
        "proxy: the signed URI is this plus the request's path and query (empty: the URL the API received).",
    )
    hubspot_default_owner: str = Field(
        "",
        description="User that owns deliveries from a portal nobody connected (empty: the CLI's local user).",
    )
    hubspot_access_token: SecretStr | None = Field(
        None,
        description="HubSpot private-app token for the CRM API (deal amount, stage, UTMs); unset: only events that "
        "carry their deal's properties, and the stored deal, are used.",
    )
    hubspot_api_url: str = Field("https://api.hubapi.com", description="HubSpot CRM API base URL.")
    hubspot_stage_probabilities: dict[str, float] = Field(
        default_factory=dict,
        description='Deal stage → win probability, a JSON object (e.g. {"qualified": 0.3}); merged over HubSpot\'s '
        "default pipeline's stages. Closed-won always counts the full amount.",
    )
    attribution_batch_size: int = Field(
        500, ge=1, le=5000, description="Most accepted webhook events one ingest batch applies in one transaction."
    )
    attribution_winners: int = Field(20, ge=1, description="Winners per campaign the 12-hourly index embeds.")
    attribution_winner_min_trials: float = Field(
        1.0, ge=0, description="Least evidence (conversions + clicks) an ad needs to count as a winner."
    )
    attribution_approval_timeout_h: float = Field(
        24.0, gt=0, description="Hours a fatigue approval waits for a human; then it expires and nothing runs."
    )
    fatigue_window_days: int = Field(
        7, ge=2, le=90, description="Days of ad metrics the fatigue trends are fitted over."
    )
    fatigue_min_days: int = Field(4, ge=2, description="Fewer days with impressions in the window: no fatigue verdict.")
    fatigue_frequency_rise: float = Field(
        0.03, gt=0, description="Frequency growth per day, relative to its mean, that counts as fatigue."
    )
    fatigue_frequency_ceiling: float = Field(3.5, gt=0, description="Latest frequency at or above this is fatigue.")
    fatigue_cpm_rise: float = Field(0.03, gt=0, description="CPM growth per day, relative to its mean, that counts.")
    fatigue_ctr_decline: float = Field(0.03, gt=0, description="CTR fall per day, relative to its mean, that counts.")
    # chat pipeline (seed 001: MIRT's workers — Telegram and ManyChat conversations)
    telegram_bot_token: SecretStr | None = Field(
        None, description="The Telegram bot's token (from BotFather); replies are sent through the Bot API with it."
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Bot API base URL (a self-hosted Bot API server, or a test's fake)."
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None,
        description="The secret_token given to setWebhook: POST /webhooks/telegram needs it in "
        "X-Telegram-Bot-Api-Secret-Token (unset: a local install makes one under the var dir, a remote one answers "
        "503 WEBHOOK_NOT_CONFIGURED).",
    )
    manychat_webhook_secret: SecretStr | None = Field(
        None,
        description="Bearer token ManyChat's External Request sends to POST /webhooks/manychat (unset: as the "
        "Telegram secret).",
    )
    manychat_api_url: str = Field("https://api.manychat.com", description="ManyChat API base URL (late replies).")
    manychat_api_token: SecretStr | None = Field(
        None, description="ManyChat API token, for replies that were not ready within the synchronous answer."
    )
    crm_url: str = Field(
        "", description="An outside CRM's base URL (orders POSTed to /orders); empty: the built-in CRM (/api/orders)."
    )
    crm_api_key: SecretStr | None = Field(None, description="Bearer token sent to the outside CRM.")
    chat_followup_after: float = Field(
        3600.0, gt=0, description="Seconds a conversation with an unfinished cart waits idle before a follow-up."
    )
    chat_followup_max: int = Field(1, ge=0, description="Follow-ups one idle period may send.")
    chat_summary_every: int = Field(
        20, ge=2, description="Messages after which a conversation is summarised and continues as new."
    )
    chat_summary_idle: float = Field(
        3600.0, gt=0, description="Seconds idle after which a conversation with new messages is summarised."
    )
    chat_sync_timeout_s: float = Field(
        8.0,
        gt=0,
        le=60,
        description="How long POST /webhooks/manychat waits for the reply before answering a holding message (the "
        "reply then goes out through ManyChat's sending API).",
    )
    chat_default_owner: str = Field(
        "", description="User that owns conversations of bots nobody connected (empty: the CLI's local user)."
    )
    chat_messages_per_minute: int = Field(
        600, ge=1, description="Messages one user's conversations may take per minute, all chats together (429 past)."
    )
    chat_max_waiting_replies: int = Field(
        50, ge=1, description="Replies one user may wait for at once (wait: true and ManyChat answers; 429 past)."
    )

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
    def analysis_work_dir_resolved(self) -> Path:
        """The analysis workers' scratch folder with its default filled in."""
        return (Path(self.analysis_work_dir) if self.analysis_work_dir else self.var_dir / "analysis-work").resolve()

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
