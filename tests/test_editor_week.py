"""An editor's week through the CLI: drafts that fill, files that name nobody, dry runs,
exit codes and messages a script and a person can rely on."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from conftest import token_of
from pipeline_helpers import ACTIVE_EXAMPLE_SUBSCRIBERS, captured, cli, make_config

from digest.capture import CaptureServer


def import_example(config: Path) -> None:
    assert cli(config, "subscribers", "import", str(config.parent / "subscribers.example.csv")) == 0


def draft_file(config: Path) -> Path:
    (path,) = (config.parent / "drafts").glob("*.md")
    return path


def blocks(path: Path) -> list[int]:
    """The article numbers of a draft file's blocks, in file order."""
    text = path.read_text(encoding="utf-8")
    return [int(n) for n in re.findall(r"<!-- digest: article = (\d+)", text)]


def delete_block(path: Path, article: int) -> None:
    """Delete one article's block (from its ``##`` line to the next), as an editor would."""
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p for p in parts if f"<!-- digest: article = {article}," not in p]
    path.write_text("".join(kept), encoding="utf-8")


# -- 1. a draft made before the articles arrived fills itself -------------------------------


def test_a_draft_made_before_collecting_takes_the_new_articles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "draft") == 0
    assert blocks(draft_file(config)) == []
    assert cli(config, "collect") == 0
    capsys.readouterr()
    assert cli(config, "draft") == 0
    assert ": 10 article(s)" in capsys.readouterr().out
    assert len(blocks(draft_file(config))) == 10  # [select] max_articles of the demo


def test_refilling_keeps_the_editors_order_and_deletions(tmp_path: Path) -> None:
    config = make_config(tmp_path, 1, extra="")
    text = config.read_text(encoding="utf-8").replace("max_articles = 10", "max_articles = 4")
    config.write_text(text, encoding="utf-8")
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    path = draft_file(config)
    first = blocks(path)
    assert len(first) == 4
    # the editor deletes the first article and moves the last one to the top
    delete_block(path, first[0])
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=## )", text)
    head, articles = parts[0], parts[1:]
    path.write_text(head + "".join([articles[-1], *articles[:-1]]), encoding="utf-8")
    edited = blocks(path)
    assert edited == [first[3], first[1], first[2]]

    assert cli(config, "draft") == 0
    after = blocks(path)
    assert after[:3] == edited  # the editor's order first
    assert len(after) == 4  # the room left is filled…
    assert first[0] not in after  # …but not with the article they deleted


def test_run_drafts_with_what_it_collected_though_an_empty_draft_exists(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_capture.port)
    import_example(config)
    assert cli(config, "draft") == 0  # Monday's draft, before anything was collected
    capsys.readouterr()
    assert cli(config, "run") == 0  # the demo config sends unreviewed drafts
    out = capsys.readouterr().out
    assert "skipped" not in out
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS
    assert cli(config, "send", "--dry-run") == 0  # as `send`: nothing to do, no error
    assert "already sent" in capsys.readouterr().out
    assert len(captured(smtp_capture)) == ACTIVE_EXAMPLE_SUBSCRIBERS


def test_an_approved_draft_is_not_changed_behind_the_editors_back(tmp_path: Path) -> None:
    config = make_config(tmp_path, 1)
    text = config.read_text(encoding="utf-8").replace("max_articles = 10", "max_articles = 3")
    config.write_text(text, encoding="utf-8")
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    path = draft_file(config)
    delete_block(path, blocks(path)[0])
    assert cli(config, "approve") == 0
    assert cli(config, "draft") == 0
    assert len(blocks(path)) == 2


# -- 3. rendered files name a fictional reader ---------------------------------------------


def test_render_out_never_carries_a_real_subscribers_name_or_token(tmp_path: Path) -> None:
    config = make_config(tmp_path, 1)
    import_example(config)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 0
    from digest.db import Store
    from digest.db import subscribers as subscriber_rows

    store = Store(f"sqlite:///{tmp_path / 'data' / 'digest.db'}")
    try:
        people = subscriber_rows.listed(store)
        tokens = [token_of(store, person.email) for person in people]
    finally:
        store.close()
    files = [tmp_path / "out" / name for name in ("email.html", "email.txt", "email.eml")]
    everything = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)
    message = email.message_from_bytes(files[2].read_bytes(), policy=email.policy.default)
    everything += "\n".join(
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    )
    for person in people:
        assert person.email not in everything
        assert person.name.split()[-1] not in everything  # no surname (Lefèvre, Dupré…)
    for token in tokens:
        assert token not in everything
    assert "Camille" in everything  # the fictional reader the preview also uses


# -- 4. a dry run sends nothing and says who would get it ------------------------------------


def approved_issue(config: Path) -> None:
    import_example(config)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "approve") == 0


def test_dry_run_with_to_sends_nothing(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_capture.port)
    approved_issue(config)
    capsys.readouterr()
    assert cli(config, "send", "--dry-run", "--to", "me@example.com") == 0
    assert captured(smtp_capture) == []
    out = capsys.readouterr().out
    assert "me@example.com" in out and "nothing is sent" in out


def test_dry_run_lists_who_would_get_the_issue(
    tmp_path: Path, smtp_capture: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, smtp_capture.port)
    csv = tmp_path / "many.csv"
    csv.write_text(
        "email,name,language,status\n"
        + "".join(f"reader{n:02d}@example.org,Reader {n},fr,active\n" for n in range(14))
        + "gone@example.org,Gone,fr,unsubscribed\n",
        encoding="utf-8",
    )
    assert cli(config, "subscribers", "import", str(csv)) == 0
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    assert cli(config, "approve") == 0
    capsys.readouterr()
    assert cli(config, "send", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "14 active" in out and "1 unsubscribed" in out
    assert "reader00@example.org" in out and "reader09@example.org" in out
    assert "reader13@example.org" not in out and "4 more" in out
    assert "gone@example.org" not in out
    assert cli(config, "send", "--dry-run", "--all") == 0
    out = capsys.readouterr().out
    assert "reader13@example.org" in out
    assert captured(smtp_capture) == []
    assert cli(config, "status") == 0
    assert "deliveries: none" in capsys.readouterr().out  # nothing recorded either


def test_dry_run_says_what_would_stop_a_real_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    import_example(config)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    capsys.readouterr()
    assert cli(config, "send", "--dry-run") == 1
    captured_io = capsys.readouterr()
    assert "not approved" in captured_io.err
    assert f"{ACTIVE_EXAMPLE_SUBSCRIBERS} active" in captured_io.out


# -- 6. exit codes and output --------------------------------------------------------------


@pytest.mark.parametrize("args", [["send", "--dryrun"], ["sned"], ["render"]])
def test_usage_errors_are_input_errors(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, *args) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_errors_are_one_line_when_not_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(tmp_path / "a-config-file-that-does-not-exist-here.toml", "send") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert len(err) > 80


def test_subscriber_list_keeps_long_addresses_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    long = "prenom.nom-compose.de-la-direction@formation-continue.example.org"
    csv = tmp_path / "list.csv"
    csv.write_text(
        f"email,name,language,tags\n{long},Marie-Hélène de La Tour d'Auvergne,fr,"
        "formateurs;alumni;direction\n",
        encoding="utf-8",
    )
    assert cli(config, "subscribers", "import", str(csv)) == 0
    capsys.readouterr()
    assert cli(config, "subscribers", "list") == 0
    assert long in capsys.readouterr().out


# -- 5. a draft or a source that cannot work is one clear line --------------------------------


def test_a_block_pointing_at_a_missing_article_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    path = draft_file(config)
    second = blocks(path)[1]
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"article = {second},", "article = 9999,"), encoding="utf-8")
    line = next(
        n for n, t in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "9999" in t
    )
    for command in (["render", "--out", str(tmp_path / "out")], ["approve"], ["draft"]):
        capsys.readouterr()
        assert cli(config, *command) == 1, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and "IntegrityError" not in err
        assert len(err.strip().splitlines()) == 1
        assert f"line {line}" in err and "9999" in err


def test_a_damaged_draft_is_one_line_naming_the_blocks_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    path = draft_file(config)
    lines = path.read_text(encoding="utf-8").splitlines()
    meta = next(n for n, line in enumerate(lines) if line.startswith("<!-- digest: article"))
    lines[meta] = lines[meta].replace("article", "article = = ", 1)  # a mangled meta line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"line {meta + 1}" in err  # the damaged line itself


def test_a_source_at_an_octal_address_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = '[[sources]]\nname = "Octale"\nurl = "http://0177.0.0.1/feed.xml"\n'
    config = make_config(tmp_path, 1, sources=sources)
    assert cli(config, "collect") == 1
    captured_io = capsys.readouterr()
    assert "Traceback" not in captured_io.err + captured_io.out
    assert len(captured_io.err.strip().splitlines()) == 1
    assert "0177.0.0.1" in captured_io.err and "[sources[0]] url" in captured_io.err


# -- 7. messages that say what matters, once, in the interface's language ----------------------


def test_a_second_demo_says_nothing_was_sent_and_the_first_warns_of_nothing_it_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "demo") == 0
    first = capsys.readouterr().out
    assert f"Messages captured: {ACTIVE_EXAMPLE_SUBSCRIBERS} in" in first
    # the demo's archive is on http://127.0.0.1, which its config opts into
    # (allow_local_links): a newcomer's first run shows no warning they did not ask for
    assert "0 warning(s)" in first
    assert "is not https" not in first
    assert cli(config, "demo") == 0
    second = capsys.readouterr().out
    assert "already sent" in second
    assert f"Messages captured: {ACTIVE_EXAMPLE_SUBSCRIBERS}" not in second
    assert "none this run" in second


def test_render_says_each_finding_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path, 1)
    assert cli(config, "collect") == 0
    assert cli(config, "draft") == 0
    path = draft_file(config)
    text = re.sub(
        r'url = "https://[^"]*"',
        'url = "http://plain.example.org/a"',
        path.read_text("utf-8"),
        count=1,
    )
    path.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli(config, "render", "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert out.count("http://plain.example.org/a is not https") == 1  # title link and button


def test_the_french_preview_lists_its_checks_in_french(tmp_path: Path) -> None:
    from preview_helpers import PERIOD, make_site

    from digest.preview import Preview

    site = make_site(tmp_path, extra_config='\n[render]\narchive_url = "http://archive.example"\n')
    try:
        snapshot = Preview(site.settings, site.store, PERIOD).snapshot()
    finally:
        site.store.engine.dispose()
    messages = [check.message for check in snapshot.checks]
    assert messages, "the http archive link should be flagged"
    assert any("n’est pas en https" in m for m in messages), messages
    assert not any("is not https" in m for m in messages)


def test_check_messages_have_french_translations() -> None:
    from digest.i18n import translate_check

    for english, french in [
        ("link http://a.example/x is not https", "Le lien http://a.example/x n’est pas en https"),
        ("article 3 (Un titre) has no summary", "L’article 3 (Un titre) n’a pas de résumé"),
        ("the subject is empty", "L’objet est vide"),
        ("issue 2026-W48 has no articles", "Le numéro 2026-W48 n’a aucun article"),
    ]:
        assert translate_check(english, "fr") == french
    assert translate_check("a check added later", "fr") == "a check added later"
    assert translate_check("the subject is empty", "en") == "the subject is empty"


def test_import_reports_duplicates_and_names_that_held_line_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, 1)
    csv = tmp_path / "messy.csv"
    csv.write_text(
        "email,name,language\n"
        "ana@example.org,Ana,fr\n"
        "ANA@example.org,Ana B.,fr\n"
        'carl@example.org,"Carl\nBcc: victim@evil.example",fr\n',
        encoding="utf-8",
    )
    assert cli(config, "subscribers", "import", str(csv)) == 0
    captured_io = capsys.readouterr()
    assert "1 duplicate row(s) merged" in captured_io.out
    assert "row 4" in captured_io.err and "line break" in captured_io.err
