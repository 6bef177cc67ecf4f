from bot.settings import Settings
from bot.store import Store


def test_environment_names_lists_and_empty_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("BATON_CUSTOMER_CHANNELS", "C01, C02,,")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("DISCORD_TOKEN", "")
    monkeypatch.setenv("BATON_DATABASE_URL", "postgres://baton:hunter2@db:5432/baton")
    settings = Settings()
    assert settings.customer_channels == ["C01", "C02"]
    assert settings.discord_token is None  # empty counts as unset
    assert "xoxb-secret" not in repr(settings)
    assert settings.database_url == "postgresql+asyncpg://baton:hunter2@db:5432/baton"
    assert "hunter2" not in Store.describe(settings.database_url)


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATON_INTERNAL_CHANNEL", raising=False)
    (tmp_path / ".env").write_text("BATON_INTERNAL_CHANNEL=C0INTERNAL\n")
    assert Settings().internal_channel == "C0INTERNAL"
