"""Files a run writes: atomic writes, JSON without NaN, sha256 of a file (no torch)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from posttrain.errors import UserError


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by its name ("nan", "inf", "-inf"): Python's
    json writes them as bare NaN / Infinity, which is not JSON and which other readers reject."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoints, shipped model files)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file, then rename: ``path`` holds the old text or the new, never a part.
    A failed write (disk full) removes the temporary file and is a one-line error naming ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"could not write {path}: {exc.strerror or exc}") from None


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(finite_json(obj), indent=2, default=str) + "\n")
