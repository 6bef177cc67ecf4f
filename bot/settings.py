"""Configuration from the environment (and a ``.env`` file in the working folder).

Names follow DESIGN.md's configuration contract. An empty variable counts as unset. Secrets are
``SecretStr``: they print as ``**********`` in logs, reprs and error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore",
                                      populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    customer_channels: CsvList = Field(default_factory=list, alias="BATON_CUSTOMER_CHANNELS")
    internal_channel: str | None = Field(default=None, alias="BATON_INTERNAL_CHANNEL")
    review_channel: str | None = Field(default=None, alias="BATON_REVIEW_CHANNEL")
    """The channel (C...) where decisions sampled for QA review are posted with their tags; none: the
    internal channel."""
    leads_channel: str | None = Field(default=None, alias="BATON_LEADS_CHANNEL")
    """The support leads' channel (C...): the weekly digest goes there; none: no digest."""
    digest_at: str = Field(default="mon 09:00", alias="BATON_DIGEST_AT")
    """When the weekly digest is posted: a weekday and a time in the business-hours zone ("mon 09:00")."""

    slack_client_id: str | None = Field(default=None, alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(default=None, alias="SLACK_CLIENT_SECRET")
    """The app's OAuth credentials (Basic Information page): "Sign in with Slack" for the dashboard."""
    public_url: str | None = Field(default=None, alias="BATON_PUBLIC_URL")
    """Where people reach this process (https://baton.example.com): the dashboard's sign-in redirect URI."""
    slack_team: str | None = Field(default=None, alias="BATON_SLACK_TEAM")
    """The installing workspace's team id (T...): only its members may sign in to the dashboard. Unset:
    the team Slack's auth.test gives the bot token."""
    slack_oidc_authorize_url: str = Field(default="https://slack.com/openid/connect/authorize",
                                          alias="SLACK_OIDC_AUTHORIZE_URL")
    session_secret: SecretStr | None = Field(default=None, alias="BATON_SESSION_SECRET")
    """The key that signs the dashboard's session cookies; unset: derived from SLACK_CLIENT_SECRET."""

    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    discord_channels: CsvList = Field(default_factory=list, alias="BATON_DISCORD_CHANNELS")
    discord_staff_roles: CsvList = Field(default_factory=list, alias="BATON_DISCORD_STAFF_ROLES")
    discord_api_url: str | None = Field(default=None, alias="DISCORD_API_URL")
    discord_gateway_url: str | None = Field(default=None, alias="DISCORD_GATEWAY_URL")

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", alias="BATON_MODEL")
    llm_timeout: float = Field(default=8.0, alias="BATON_LLM_TIMEOUT", gt=0)
    """Seconds one model call (with its retries) may take."""
    first_reply: float = Field(default=10.0, alias="BATON_FIRST_REPLY_SECONDS", gt=0)
    """The longest a customer waits for the model before the offline engine answers instead."""
    llm_budget: int = Field(default=20_000, alias="BATON_LLM_TOKENS_PER_CONVERSATION", ge=0)

    database_url: str = Field(default="sqlite+aiosqlite:///baton.db", alias="BATON_DATABASE_URL")
    policy: Path | None = Field(default=None, alias="BATON_POLICY")
    knowledge: Path | None = Field(default=None, alias="BATON_KNOWLEDGE")
    port: int = Field(default=3000, alias="PORT", ge=1, le=65535)
    log_level: str = Field(default="info", alias="BATON_LOG_LEVEL")
    role: Literal["all", "web", "gateway"] = Field(default="all", alias="BATON_ROLE")
    """``web``: HTTP platforms, inbox workers and courier (run N); ``gateway``: also Discord's gateway (run one)."""
    workers: int = Field(default=4, alias="BATON_WORKERS", ge=1, le=256)
    """Inbox workers per process: messages worked on at once. More than a few only slow acknowledgements
    down: the work is CPU-bound, and every worker's turn shares the event loop with them."""
    metrics: bool = Field(default=False, alias="BATON_METRICS")
    """Serve ``GET /metrics`` (Prometheus's text format) on the web port; off: it answers 404."""
    metrics_token: SecretStr | None = Field(default=None, alias="BATON_METRICS_TOKEN")
    """When set, a scrape needs ``Authorization: Bearer <token>`` (401 otherwise)."""

    @field_validator("customer_channels", "discord_channels", "discord_staff_roles", mode="before")
    @classmethod
    def _csv(cls, v: object) -> object:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        """Accept the URLs people paste (postgres://, postgresql://, sqlite://) and pick the async driver."""
        for plain, async_ in (("postgres://", "postgresql+asyncpg://"), ("postgresql://", "postgresql+asyncpg://"),
                              ("sqlite://", "sqlite+aiosqlite://")):
            if v.startswith(plain):
                return async_ + v[len(plain):]
        return v
