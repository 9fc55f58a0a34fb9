"""``digest init``: a starter config, a template override folder and an example subscriber CSV."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import DigestError

__all__ = ["write_starter"]

_FILES = {
    "digest.toml": "digest.toml",
    "subscribers.csv": "subscribers.csv",
    "templates/README.txt": "templates-README.txt",
}


def write_starter(directory: Path) -> list[Path]:
    """Write the starter files into ``directory``; refuse to overwrite any of them."""
    targets = {directory / name: source for name, source in _FILES.items()}
    existing = [path for path in targets if path.exists()]
    if existing:
        raise DigestError(
            f"{existing[0]} already exists; init writes only new files",
            hint="choose an empty folder: `digest init DIR`",
        )
    starter = resources.files("digest") / "templates" / "starter"
    for path, source in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((starter / source).read_text(encoding="utf-8"), encoding="utf-8")
    return list(targets)
