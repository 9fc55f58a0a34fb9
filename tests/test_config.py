from __future__ import annotations

from pathlib import Path

import pytest

from digest.cli import main
from digest.config import load_settings
from digest.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_paths_relative_to_the_file() -> None:
    settings = load_settings(ROOT / "examples" / "digest.toml")
    assert settings.newsletter.language == "fr"
    assert len(settings.sources) == 3
    for source in settings.sources:
        assert Path(source.url).is_absolute()
        assert Path(source.url).parent == ROOT / "examples" / "feeds"
    assert settings.database.url == f"sqlite:///{ROOT / 'examples' / 'data' / 'digest.db'}"
    assert settings.draft.dir == ROOT / "examples" / "drafts"


def test_starter_config_is_valid(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "new")]) == 0
    settings = load_settings(tmp_path / "new" / "digest.toml")
    assert settings.smtp.security == "starttls"
    assert (tmp_path / "new" / "templates").is_dir()
    # init never overwrites
    assert main(["init", str(tmp_path / "new")]) == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[smtp]\nprot = 25\n", "[smtp] unknown key 'prot'"),
        ('[smtp]\nport = "twenty"\n', "[smtp] port must be a whole number"),
        ('[smtp]\nsecurity = "tls"\n', "[smtp] security must be one of none | starttls | ssl"),
        ('[[sources]]\nname = "a"\n', "[sources[0]] missing required key 'url'"),
        ("[nope]\n", "top level unknown key 'nope'"),
        ("[smtp\n", "not valid TOML"),
        ('[smtp]\npassword = "hunter22"\n', "secrets are not read from the config file"),
    ],
)
def test_a_wrong_file_names_the_file_and_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "digest.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    assert "hunter22" not in str(info.value)


def test_wrong_file_from_the_cli_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "digest.toml", "[smtp]\nprot = 25\n")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'prot'" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one message, maybe wrapped by the terminal width


def test_missing_config_says_how_to_create_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect"]) == 1
    err = capsys.readouterr().err
    assert "digest init" in err


def test_environment_overrides_the_file_and_secrets_come_from_it(tmp_path: Path) -> None:
    path = write(tmp_path / "digest.toml", '[smtp]\nhost = "file.example"\nport = 25\n')
    settings = load_settings(
        path,
        {
            "DIGEST_SMTP_HOST": "env.example",
            "DIGEST_SMTP_PORT": "2525",
            "DIGEST_SMTP_PASSWORD": "s3cret-pass",
            "DIGEST_SECRET_KEY": "k",
            "DIGEST_DATABASE_URL": "sqlite:////tmp/x.db",
            "DIGEST_BASE_URL": "https://news.example",
        },
    )
    assert (settings.smtp.host, settings.smtp.port) == ("env.example", 2525)
    assert settings.smtp.password == "s3cret-pass"
    assert "s3cret-pass" not in repr(settings)
    assert settings.secret_key == "k"
    assert settings.database.url == "sqlite:////tmp/x.db"
    assert settings.web.base_url == "https://news.example"


def test_bad_port_in_environment_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "digest.toml", "")
    with pytest.raises(ConfigError, match="whole number"):
        load_settings(path, {"DIGEST_SMTP_PORT": "abc"})


def test_digest_config_variable_chooses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "elsewhere.toml", '[newsletter]\ntitle = "Ailleurs"\n')
    monkeypatch.setenv("DIGEST_CONFIG", str(path))
    assert load_settings().newsletter.title == "Ailleurs"


@pytest.mark.parametrize(
    ("text", "key", "accepted"),
    [
        ('[newsletter]\ntimezone = "Europe/Pariss"\n', "[newsletter] timezone", "Europe/Paris"),
        ('[schedule]\ntimezone = "Paris"\n', "[schedule] timezone", "IANA"),
        ('[schedule]\ncron = "0 25 * * mon"\n', "[schedule] cron", "five fields"),
        ('[schedule]\ncron = "0 7 * mon"\n', "[schedule] cron", "five fields"),
        ('[schedule]\ncron = "0 7 * * lundi"\n', "[schedule] cron", "five fields"),
        ('[newsletter]\nlanguage = "de"\n', "[newsletter] language", "en, fr"),
        ('[[sources]]\nname = "a"\nurl = "a.xml"\nlanguage = "fr FR"\n', "language", "pt-BR"),
        ('[render]\nprimary_color = "rouge"\n', "[render] primary_color", "#b3261e"),
        ('[render]\nfont_family = "x; } body { display: none"\n', "font_family", "serif"),
        ("[send]\nrate = -5\n", "[send] rate", "at least 0"),
        ("[send]\nconnections = 0\n", "[send] connections", "at least 1"),
        ("[collect]\nconcurrency = -1\n", "[collect] concurrency", "at least 1"),
        ("[collect]\nmax_bytes = -10\n", "[collect] max_bytes", "at least 1"),
        ("[collect]\ntimeout = 0\n", "[collect] timeout", "above 0"),
        ("[collect]\ntimeout = nan\n", "[collect] timeout", "above 0"),
        ("[smtp]\nport = 70000\n", "[smtp] port", "at most 65535"),
        ("[select]\nmax_articles = 0\n", "[select] max_articles", "at least 1"),
        ("[schedule]\nmisfire_grace_hours = -1\n", "misfire_grace_hours", "above 0"),
        (
            '[[sources]]\nname = "a"\nurl = "http://0177.0.0.1/feed.xml"\n',
            "[sources[0]] url",
            "https://",
        ),
        ('[[sources]]\nname = "a"\nurl = "ftp://example.org/feed"\n', "url", "https://"),
    ],
)
def test_a_bad_value_names_the_file_the_key_the_value_and_what_is_accepted(
    tmp_path: Path, text: str, key: str, accepted: str
) -> None:
    path = write(tmp_path / "digest.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    value = text.split("=", 1)[1].split("\n")[0].strip() if text.count("=") == 1 else ""
    assert value in message
    assert accepted in message


def test_bad_values_are_refused_by_every_command_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "digest.toml", '[newsletter]\ntimezone = "Europe/Pariss"\n')
    for command in (["status"], ["draft"], ["approve"], ["send"], ["run"], ["collect"]):
        assert main(command) == 1, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "Europe/Pariss" in err
    write(tmp_path / "digest.toml", '[schedule]\ncron = "0 25 * * mon"\n')
    assert main(["status"]) == 1  # status does not say "not scheduled" for a cron that cannot be
    assert "[schedule] cron" in capsys.readouterr().err


def test_a_file_starting_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_bytes('\ufeff[newsletter]\ntitle = "Notepad"\n'.encode())
    assert load_settings(path).newsletter.title == "Notepad"


def test_deeply_nested_toml_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "digest.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err


def test_the_starter_and_the_demo_configs_pass_the_value_rules(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "new")]) == 0
    load_settings(tmp_path / "new" / "digest.toml")
    load_settings(ROOT / "examples" / "digest.toml")
