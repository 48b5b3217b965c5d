"""Settings from ``NEOPAIN_*`` environment variables, built on demand (no import-time singleton)."""

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where neopain keeps its files and how it logs.

    Every field can be set from the environment, e.g. ``NEOPAIN_DATA_DIR=/srv/neopain``.
    """

    model_config = SettingsConfigDict(env_prefix="NEOPAIN_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("neopain"),
        description="Folder for the demo output and, later, the records database.",
    )
    log_level: str = Field(default="WARNING", description="Python logging level name.")


def get_settings() -> Settings:
    """Build settings from the environment, afresh on every call."""
    return Settings()
