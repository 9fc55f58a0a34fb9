"""Persistence is a layer: only ``digest/db/`` speaks to the database library.

Every module under ``digest/`` is parsed (not imported) and its imports read,
including those inside functions and ``TYPE_CHECKING`` blocks: a module outside
``digest/db/`` that imports SQLAlchemy, or APScheduler's SQLAlchemy job store,
writes SQL of its own, and the rule "every write to a table exists once" no
longer holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "digest"
FORBIDDEN = ("sqlalchemy", "apscheduler.jobstores.sqlalchemy")


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name ``path`` imports, absolute (relative imports resolved from ``root``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(names: set[str]) -> list[str]:
    return sorted(
        name for name in names if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "db" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_db_package_imports_sqlalchemy(path: Path) -> None:
    name = path.relative_to(ROOT).as_posix()
    assert _forbidden(_imports(path)) == [], f"{name} imports the database library"


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    path = tmp_path / "digest" / "collect" / "example.py"
    path.parent.mkdir(parents=True)
    source = (
        "import sqlalchemy as sa\n"
        "from sqlalchemy.engine import Connection\n"
        "def f():\n    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore\n"
        "from apscheduler.jobstores.memory import MemoryJobStore\n"
        "from ..db import Store\n"
    )
    path.write_text(source, encoding="utf-8")
    names = _imports(path, root=tmp_path)
    assert _forbidden(names) == [
        "apscheduler.jobstores.sqlalchemy",
        "apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore",
        "sqlalchemy",
        "sqlalchemy.engine",
        "sqlalchemy.engine.Connection",
    ]
    assert "digest.db.Store" in names  # relative imports resolve to the package


def test_the_db_package_is_where_sqlalchemy_is_used() -> None:
    used = {p.name for p in (PACKAGE / "db").glob("*.py") if _forbidden(_imports(p))}
    assert {"engine.py", "schema.py", "jobstore.py", "deliveries.py"} <= used


def _test_modules_imported(path: Path) -> list[str]:
    """The ``test_*`` modules ``path`` imports, spelled ``test_x`` or ``tests.test_x``."""
    found = set()
    for name in _imports(path, root=path.parent.parent):
        parts = name.split(".")
        if parts[0] == "tests":
            parts = parts[1:]
        if parts and parts[0].startswith("test_"):
            found.add(parts[0])
    return sorted(found)


def test_test_modules_do_not_import_each_other(tmp_path: Path) -> None:
    """Shared helpers live in ``tests/*_helpers.py`` (fixtures in conftest.py), not in a test.

    Importing a test module runs its collection-time code a second time under another
    name and ties one area's tests to another's; a helper module is imported instead.
    """
    sample = tmp_path / "tests" / "test_sample.py"
    sample.parent.mkdir()
    sample.write_text(
        "from test_send import RENDERED\n"
        "def f():\n    import tests.test_compose\n"
        "from tests import test_collect\n"
        "from send_helpers import make_store\n"
        "from conftest import ROOT\n",
        encoding="utf-8",
    )
    assert _test_modules_imported(sample) == ["test_collect", "test_compose", "test_send"]

    offenders = {
        path.name: imported
        for path in sorted((ROOT / "tests").glob("*.py"))
        if (imported := _test_modules_imported(path))
    }
    assert offenders == {}, "test modules import other test modules; move the helpers"
