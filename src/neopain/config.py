"""Settings from ``NEOPAIN_*`` environment variables, built on demand (no import-time singleton)."""

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from neopain.errors import NeopainError


class Settings(BaseSettings):
    """Where neopain keeps its files, how it logs, and how the bedside monitor runs.

    Every field can be set from the environment, e.g. ``NEOPAIN_DATA_DIR=/srv/neopain`` or
    ``NEOPAIN_DATABASE_URL=postgresql+psycopg://neopain@db/neopain``.
    """

    model_config = SettingsConfigDict(env_prefix="NEOPAIN_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("neopain"),
        description="Folder for the demo output and the records database.",
    )
    log_level: str = Field(default="WARNING", description="Python logging level name.")

    # the bedside monitor (neopain serve)
    database_url: str | None = Field(
        default=None,
        description="URL of the records database, SQLite or PostgreSQL; None: SQLite file "
                    "records.sqlite3 in data_dir.",
    )
    model: str | None = Field(
        default=None,
        description="Pain model: a predictor kind's name or an exported .onnx file; None: the "
                    "default kind, the built-in rule-based NFCS scorer (neopain models list).")
    detector: str = Field(default="mediapipe-short", description="Face detector of the monitor.")
    smoothing_window: int = Field(default=5, ge=1, le=50,
                                  description="Frames the monitor smooths P(pain) over.")
    redetect_every: int = Field(
        default=10, ge=0, le=1000,
        description="Live monitoring follows the face with the face mesh and runs the detector "
                    "every this many frames and when the face is lost; 0 detects in every "
                    "frame.")
    host: str = Field(default="127.0.0.1", description="Address the server listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the server listens on.")
    secure_cookies: bool | None = Field(
        default=None,
        description="Mark cookies Secure: True always, False never, None when the request "
                    "came over HTTPS.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key of the CSRF tokens and signed links; None: a random key made once "
                    "and kept in the records database, shared by every server process on it.",
    )
    session_hours: float = Field(default=12.0, gt=0, description="Login lifetime in hours.")
    login_attempts: int = Field(default=5, ge=1,
                                description="Failed logins allowed per window before refusal.")
    login_window_s: float = Field(default=300.0, gt=0,
                                  description="Window of the login rate limit, seconds.")
    max_upload_mb: float = Field(default=50.0, gt=0, description="Largest upload, MB.")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1,
        description="Largest image read from a file or an upload, in pixels (width × height); "
                    "checked from the header, before any pixel is decoded.",
    )
    max_concurrent_uploads: int = Field(
        default=2, ge=1,
        description="Uploads assessed at once; more wait briefly, then get 503 + Retry-After.",
    )
    max_streams: int = Field(
        default=32, ge=1,
        description="Live streams open at once; more are closed with code 1013 (try again later).",
    )
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto are trusted "
                    "(comma-separated, '*' for any); None trusts no proxy.",
    )
    timeline_interval_s: float = Field(
        default=1.0, ge=0,
        description="Live monitoring records one assessment per this many seconds (plus every "
                    "state change); 0 records every frame with a face.",
    )
    stale_s: float = Field(
        default=3.0, gt=0, le=60,
        description="Seconds without a result after which the live page greys its state as "
                    "'no current assessment' and clears the face overlay.",
    )
    session_idle_s: float = Field(
        default=300.0, ge=10,
        description="A live monitoring session that gets no frame for this many seconds is "
                    "ended by the server (checked on start-up and every 30 s at most).",
    )
    alarm_pain_s: float = Field(
        default=30.0, ge=5, le=3600,
        description="Ward alarm (high): the smoothed state has been pain this many seconds.")
    alarm_stale_s: float = Field(
        default=10.0, ge=5, le=3600,
        description="Ward alarm (medium): an open live session got no frame this many seconds.")
    alarm_noface_s: float = Field(
        default=120.0, ge=5, le=3600,
        description="Ward alarm (low): an open live session had no assessable face this many "
                    "seconds.")
    alarm_escalate_s: float = Field(
        default=120.0, ge=5, le=3600,
        description="An alarm nobody acknowledged this many seconds after it was raised "
                    "escalates.")
    timezone: str | None = Field(default=None,
                                 description="IANA zone for days and hours in charts; "
                                             "None: the server's local time.")

    @model_validator(mode="after")
    def _link_alarm_before_idle_end(self) -> "Settings":
        # a silent bed must alarm before the server ends its session as idle
        if self.alarm_stale_s >= self.session_idle_s:
            raise ValueError(
                f"NEOPAIN_ALARM_STALE_S={self.alarm_stale_s:g} must be below "
                f"NEOPAIN_SESSION_IDLE_S={self.session_idle_s:g}: a bed whose camera went "
                "silent must raise its link alarm before its session is ended as idle")
        return self

    def records_url(self) -> str:
        """The database URL in use: ``database_url`` or SQLite in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'records.sqlite3'}"


def settings_from(**values: object) -> Settings:
    """Settings from the environment, with ``values`` given instead where named.

    Raises:
        NeopainError: a setting is not valid; the message names each ``NEOPAIN_*`` variable
            and what it accepts, never the value (it may be a secret).
    """
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = [f"NEOPAIN_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"]
                    else e["msg"].removeprefix("Value error, ") for e in error.errors()]
        raise NeopainError("settings not valid: " + "; ".join(problems)) from None


def get_settings() -> Settings:
    """Build settings from the environment, afresh on every call (``settings_from``).

    Raises:
        NeopainError: a ``NEOPAIN_*`` variable is not valid.
    """
    return settings_from()
