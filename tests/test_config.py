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


def test_a_bad_variable_is_named_with_what_is_valid_never_echoed(monkeypatch):
    import pytest

    from neopain.errors import NeopainError

    monkeypatch.setenv("NEOPAIN_STALE_S", "s3cret-typo")
    with pytest.raises(NeopainError, match="NEOPAIN_STALE_S: Input should be a valid number") \
            as raised:
        get_settings()
    assert "s3cret" not in str(raised.value)


def test_a_link_alarm_limit_at_or_past_the_idle_end_is_refused(monkeypatch):
    """Issue 18 review: a silent bed would be ended as idle before its link alarm was raised."""
    import pytest

    from neopain.errors import NeopainError

    monkeypatch.setenv("NEOPAIN_ALARM_STALE_S", "300")
    with pytest.raises(NeopainError, match="NEOPAIN_ALARM_STALE_S=300 must be below "
                                           "NEOPAIN_SESSION_IDLE_S=300"):
        get_settings()
    monkeypatch.setenv("NEOPAIN_SESSION_IDLE_S", "600")
    assert get_settings().alarm_stale_s == 300


def test_the_command_line_says_which_variable_is_wrong_without_a_traceback(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "neopain", "users", "list"], text=True,
                         capture_output=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "NEOPAIN_DATA_DIR": str(tmp_path),
                              "NEOPAIN_STALE_S": "abc"})
    assert run.returncode == 1
    assert "error: settings not valid: NEOPAIN_STALE_S" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
