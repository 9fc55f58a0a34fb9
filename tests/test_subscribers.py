"""The subscriber list: import, normalization, the suppression list, export, erasure."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import token_of

from digest.db import Store, schema
from digest.errors import SubscriberError
from digest.subscribers import (
    delete,
    export_csv,
    import_csv,
    list_subscribers,
    normalize_email,
    unsubscribe,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'digest.db'}")


def write(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def by_email(store: Store) -> dict[str, object]:
    return {s.email: s for s in list_subscribers(store)}


def test_good_rows_are_imported_and_bad_rows_reported_with_row_and_reason(
    store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "email,name,language,tags,status\n"
        "alice@exemple.fr,Alice Martin,fr,design;3d,\n"
        "not-an-address,Bob,fr,,\n"
        ",Nobody,fr,,\n"
        "carla@exemple.fr,Carla,klingon-language-x,,\n"
        "dan@exemple.fr,Dan,en,a|b,active\n"
        "eve@exemple.fr,Eve,fr,,maybe\n",
    )
    report = import_csv(store, path)
    assert report.added == 2
    assert [(e.row, e.reason.split(":")[0]) for e in report.errors] == [
        (3, "invalid address 'not-an-address'"),
        (4, "missing address"),
        (5, "invalid language 'klingon-language-x' (use a code like fr or en)"),
        (7, "invalid status 'maybe' (active or unsubscribed)"),
    ]
    people = by_email(store)
    assert set(people) == {"alice@exemple.fr", "dan@exemple.fr"}
    assert people["alice@exemple.fr"].tags == ("design", "3d")  # type: ignore[attr-defined]
    assert people["dan@exemple.fr"].tags == ("a", "b")  # type: ignore[attr-defined]
    assert people["dan@exemple.fr"].language == "en"  # type: ignore[attr-defined]


def test_domain_is_lowercased_and_idna_encoded_local_part_kept(
    store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "email,name,language\nJean.Dupont@Exemple.FR,Jean,fr\nzoé@café.fr,Zoé,fr\n"
    )
    import_csv(store, path)
    assert set(by_email(store)) == {"Jean.Dupont@exemple.fr", "zoé@xn--caf-dma.fr"}
    assert normalize_email("user@CAFÉ.fr") == "user@xn--caf-dma.fr"


def test_duplicates_are_merged_case_insensitively(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,language,tags\n"
        "ana@exemple.fr,,fr,a\n"
        "ANA@exemple.fr,Ana,fr,b\n"
        "ana@EXEMPLE.fr,Other,fr,a\n",
    )
    report = import_csv(store, path)
    assert report.added == 1 and report.duplicates == 2
    (ana,) = list_subscribers(store)
    assert ana.name == "Ana" and ana.tags == ("a", "b")
    # Importing the same person again under another case changes nobody's count.
    import_csv(store, write(tmp_path, "email,name,language\nAna@Exemple.fr,Ana,fr\n", "b.csv"))
    assert len(list_subscribers(store)) == 1


def test_names_lose_line_breaks_and_control_characters(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'email,name,language\nx@exemple.fr,"Eve\r\nBcc: victim@example.com\x07\u202e",fr\n',
    )
    import_csv(store, path)
    (eve,) = list_subscribers(store)
    assert eve.name == "Eve Bcc: victim@example.com"
    assert "\n" not in eve.name and "\r" not in eve.name


def test_reimport_never_resubscribes_the_unsubscribed_or_bounced(
    store: Store, tmp_path: Path
) -> None:
    first = write(tmp_path, "email,name,language\na@exemple.fr,A,fr\nb@exemple.fr,B,fr\n")
    import_csv(store, first)
    unsubscribe(store, "a@exemple.fr")
    with store.begin() as conn:
        conn.execute(
            sa.update(schema.subscribers)
            .where(schema.subscribers.c.email == "b@exemple.fr")
            .values(status="bounced")
        )
    report = import_csv(
        store,
        write(
            tmp_path,
            "email,name,language,status\na@exemple.fr,A,fr,active\nb@exemple.fr,B,fr,\n",
            "again.csv",
        ),
    )
    assert report.kept_unsubscribed == 2
    statuses = {s.email: s.status for s in list_subscribers(store)}
    assert statuses == {"a@exemple.fr": "unsubscribed", "b@exemple.fr": "bounced"}


def test_a_csv_can_unsubscribe_people(store: Store, tmp_path: Path) -> None:
    import_csv(store, write(tmp_path, "email,name,language\na@exemple.fr,A,fr\n"))
    report = import_csv(
        store, write(tmp_path, "email,status\nA@exemple.fr,unsubscribed\n", "out.csv")
    )
    assert report.unsubscribed == 1
    assert list_subscribers(store, "active") == []


def test_deleted_people_keep_only_a_hash_and_are_not_reimported(
    store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path, "email,name,language\ngone@exemple.fr,Gone,fr\nstay@exemple.fr,S,fr\n")
    import_csv(store, path)
    assert delete(store, "Gone@Exemple.fr") is True
    assert [s.email for s in list_subscribers(store)] == ["stay@exemple.fr"]
    raw = Path(store.url.removeprefix("sqlite:///")).read_bytes()
    with store.begin() as conn:
        hashes = conn.execute(sa.select(schema.suppressions)).all()
        rows = conn.execute(sa.select(schema.subscribers.c.email)).scalars().all()
    assert len(hashes) == 1 and "gone" not in hashes[0].email_hash
    assert "gone@exemple.fr" not in rows
    del raw  # the WAL may still hold old pages; the tables are what we promise about
    report = import_csv(store, path)
    assert report.suppressed == 1 and report.added == 0
    assert [s.email for s in list_subscribers(store)] == ["stay@exemple.fr"]


def test_every_subscriber_gets_a_distinct_unguessable_token(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"p{i}@exemple.fr,P,fr\n" for i in range(200))
    import_csv(store, write(tmp_path, "email,name,language\n" + rows))
    with store.begin() as conn:
        tokens = (
            conn.execute(sa.select(schema.subscribers.c.token).order_by(schema.subscribers.c.id))
            .scalars()
            .all()
        )
    assert len(set(tokens)) == 200
    assert all(len(t) >= 22 for t in tokens)  # 128 bits in URL-safe base64
    assert token_of(store, "p0@exemple.fr") == tokens[0]


def test_export_neutralises_formula_cells_and_imports_back_unchanged(
    store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "email,name,language,tags\n"
        '=cmd@exemple.fr,"=HYPERLINK(""http://evil"")",fr,+tag;@x\n'
        "normal@exemple.fr,-Minus,fr,\n",
    )
    import_csv(store, path)
    out = io.StringIO()
    assert export_csv(store, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["email", "name", "language", "tags", "status"]
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert rows[1][0] == "'=cmd@exemple.fr"
    # Round trip: the export imports into a fresh list unchanged.
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    exported = write(tmp_path, out.getvalue(), "export.csv")
    import_csv(other, exported)
    assert [(s.email, s.name, s.tags) for s in list_subscribers(other)] == [
        (s.email, s.name, s.tags) for s in list_subscribers(store)
    ]


def test_semicolon_csv_with_bom_from_a_french_spreadsheet(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffEmail;Name;Language\r\nléa@exemple.fr;Léa;fr\r\n".encode())
    report = import_csv(store, path)
    assert report.added == 1 and not report.errors
    assert list_subscribers(store)[0].name == "Léa"


def test_unreadable_files_raise_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SubscriberError, match="no 'email' column"):
        import_csv(store, write(tmp_path, "mail,name\nx@y.fr,X\n"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,name\nx@exemple.fr,L\xe9a\n".encode("latin-1"))
    with pytest.raises(SubscriberError, match="not UTF-8"):
        import_csv(store, latin)
    with pytest.raises(SubscriberError, match="cannot read"):
        import_csv(store, tmp_path / "missing.csv")


def test_unsubscribe_and_delete_unknown_addresses(store: Store) -> None:
    with pytest.raises(SubscriberError, match="no subscriber"):
        unsubscribe(store, "nobody@exemple.fr")
    assert delete(store, "nobody@exemple.fr") is False


def test_large_csv_with_mixed_rows(store: Store, tmp_path: Path) -> None:
    lines = ["email,name,language,tags,status"]
    for i in range(100_000):
        if i % 10 == 3:
            lines.append(f"broken{i}-at-exemple.fr,N{i},fr,,")
        elif i % 10 == 7:
            lines.append(f"dup{i // 100}@exemple.fr,N{i},fr,t{i % 3},")
        else:
            lines.append(f"user{i}@exemple.fr,Nom {i},fr,a;b,")
    path = write(tmp_path, "\n".join(lines) + "\n")
    report = import_csv(store, path)
    assert report.rows == 100_000
    assert len(report.errors) == 10_000
    assert report.errors[0].row == 5  # data row 3 is spreadsheet row 5
    assert report.added == 80_000 + 1_000
    assert report.duplicates == 9_000
    assert len(list_subscribers(store, "active")) == 81_000
    again = import_csv(store, path)
    assert again.added == 0 and again.updated == 0
