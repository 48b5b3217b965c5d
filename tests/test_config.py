"""Settings come from NEOPAIN_* variables at call time, never from an import-time singleton."""

from pathlib import Path

from neopain.config import get_settings


def test_settings_follow_the_environment_at_each_call(monkeypatch, tmp_path):
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path / "a"))
    assert get_settings().data_dir == tmp_path / "a"
    monkeypatch.setenv("NEOPAIN_DATA_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("NEOPAIN_LOG_LEVEL", "DEBUG")
    settings = get_settings()
    assert settings.data_dir == tmp_path / "b" and settings.log_level == "DEBUG"


def test_default_data_dir_is_a_per_user_folder_named_neopain(monkeypatch):
    monkeypatch.delenv("NEOPAIN_DATA_DIR", raising=False)
    assert isinstance(get_settings().data_dir, Path)
    assert get_settings().data_dir.name == "neopain"
