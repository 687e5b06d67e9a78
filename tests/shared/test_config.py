"""Settings: environment parsing and derived values."""

from __future__ import annotations

from pathlib import Path

from ucvgl.shared.config import Settings


def test_data_roots_colon_list(monkeypatch):
    monkeypatch.setenv("UCVGL_DATA_ROOTS", "/a:/b")
    assert Settings().data_roots == [Path("/a"), Path("/b")]


def test_data_roots_json_list(monkeypatch):
    monkeypatch.setenv("UCVGL_DATA_ROOTS", '["/x", "/y"]')
    assert Settings().data_roots == [Path("/x"), Path("/y")]


def test_defaults_are_embedded(tmp_path, monkeypatch):
    monkeypatch.setenv("UCVGL_WORK_DIR", str(tmp_path))
    s = Settings()
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'ucvgl.sqlite'}"
    assert s.resolved_broker_url.startswith("sqla+sqlite:///")


def test_explicit_urls_win(monkeypatch):
    monkeypatch.setenv("UCVGL_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
    monkeypatch.setenv("UCVGL_BROKER_URL", "redis://127.0.0.1:6379/0")
    s = Settings()
    assert s.resolved_database_url.startswith("postgresql+psycopg://")
    assert s.resolved_broker_url == "redis://127.0.0.1:6379/0"


def test_settings_fixture_isolates(settings, tmp_path):
    assert settings.work_dir == tmp_path / "work"
    assert settings.data_roots == [tmp_path / "data"]
