"""Run folders are owned and never clobbered.

A run folder records who writes it in ``run.json`` (method, plugin, a hash of the resolved
configuration, status, pid) and holds ``.lock`` (an exclusive ``flock``) while a run writes to it.
Before anything is written, ``check_new_run`` refuses a folder that already holds a run or other
files (unless ``--overwrite``) and ``check_resume`` refuses a checkpoint of another method, or one
whose options differ from the command's (unless ``--force-resume``). The folder is created only
when the run starts (``RunFolder``), and removed again when the run fails before its training loop
began, so a failed start leaves nothing behind.

No torch here: these checks run before the model is loaded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from posttrain.errors import UserError

OWNER_FILE = "run.json"
LOCK_FILE = ".lock"
# What a run writes into its folder; --overwrite removes these and nothing else.
RUN_ARTIFACTS = (
    OWNER_FILE,
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "plot.png",
    "outcomes.jsonl",
    "predictions.jsonl",
    "checkpoints",
    "model",
)
# Options that change how a run is logged or saved, not what it computes: a resume may change them.
BOOKKEEPING_OPTIONS = {"log_every", "save_every", "keep_checkpoints"}


# --- what a folder holds ----------------------------------------------------------------------------


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of what the run computes: method, model, data, seed and options."""
    keyed = {k: v for k, v in resolved.items() if k != "device"}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_owner(folder: Path) -> dict[str, Any] | None:
    """``run.json`` of a run folder; for a folder written before run.json existed, what its
    config.yaml says (status unknown); None when the folder holds no run."""
    owner = _read_json(folder / OWNER_FILE)
    if owner is not None:
        return owner
    resolved = read_resolved(folder)
    if resolved is not None:
        return {"method": resolved.get("method", "?"), "status": "unknown"}
    return None


def read_resolved(folder: Path) -> dict[str, Any] | None:
    """The resolved configuration a run wrote to ``config.yaml`` (None when absent or unreadable)."""
    import yaml

    try:
        data = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) and "method" in data else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_holder(folder: Path) -> str | None:
    """The pid (as written in .lock) of a live run holding the folder's lock, else None."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return None
    try:
        lock = _FileLock(path)
    except OSError:
        return None
    try:
        if lock.try_acquire():
            lock.release()
            return None
        return lock.holder()
    finally:
        lock.close()


def _describe_owner(owner: dict[str, Any]) -> str:
    status = owner.get("status", "unknown")
    return f"a run of {owner.get('method', '?')}" + ("" if status == "unknown" else f" ({status})")


# --- checks before anything is written ---------------------------------------------------------------


def check_not_in_use(folder: Path) -> None:
    pid = lock_holder(folder)
    if pid is not None:
        raise UserError(
            f"--output-dir {folder}: another run (pid {pid}) is writing to this folder; wait for it to end "
            "or choose another --output-dir"
        )


def check_new_run(folder: Path, overwrite: bool, dataset: str | None) -> None:
    """A new run may take a missing or empty folder; one that holds a run or other files only with
    ``--overwrite``, and never when the dataset lies inside it (overwriting would delete it)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output-dir {folder}: is a file; expected a folder for the run")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    check_not_in_use(folder)
    if overwrite:
        check_dataset_outside(folder, dataset)
        return
    owner = read_owner(folder)
    if owner is not None:
        raise UserError(
            f"--output-dir {folder}: already holds {_describe_owner(owner)}; continue it with --resume, "
            "replace it with --overwrite, or choose another --output-dir"
        )
    raise UserError(
        f"--output-dir {folder}: is not empty and holds no run; choose a new or empty folder "
        "(or pass --overwrite to write the run into it)"
    )


def check_dataset_outside(folder: Path, dataset: str | None) -> None:
    if dataset is None or not Path(dataset).expanduser().exists():
        return
    data, root = Path(dataset).expanduser().resolve(), folder.resolve()
    if data == root or root in data.parents:
        raise UserError(
            f"--dataset {dataset}: lies inside --output-dir {folder}, which --overwrite would replace; "
            "choose another --output-dir"
        )


def check_resume(folder: Path, method: str, resolved: dict[str, Any], checkpoint_step: int | None, force: bool) -> None:
    """``--resume`` continues only a run of the same method with the same options (``--force-resume``
    accepts changed options), and never past a checkpoint beyond the new ``max_steps``."""
    if not folder.is_dir():
        raise UserError(f"--resume: {folder} does not exist (pass the run folder as --output-dir)")
    check_not_in_use(folder)
    owner = read_owner(folder)
    if owner is None:
        raise UserError(f"--resume: {folder} holds no run (no run.json or config.yaml); pass a run folder")
    if owner.get("method") != method:
        raise UserError(
            f"--resume: {folder} holds a run of {owner.get('method', '?')}, not {method}; "
            f"resume it with `catalog run {owner.get('method', '?')} --resume` or choose another --output-dir"
        )
    max_steps = (resolved.get("config") or {}).get("max_steps")
    if checkpoint_step is not None and isinstance(max_steps, int) and max_steps < checkpoint_step:
        raise UserError(
            f"--resume: max_steps {max_steps} is below the checkpoint's step {checkpoint_step} in {folder}; "
            f"set max_steps to {checkpoint_step} or more"
        )
    changes = changed_options(read_resolved(folder) or {}, resolved)
    if changes and not force:
        raise UserError(
            f"--resume: options changed since {folder} was started: {'; '.join(changes)}; "
            "pass --force-resume to continue with the new ones, or choose another --output-dir"
        )


def changed_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``name old -> new`` for each of model, dataset, seed and config field that differs."""
    changes = [
        f"{key} {old[key]!r} -> {new.get(key)!r}"
        for key in ("model", "dataset", "seed")
        if key in old and old[key] != new.get(key)
    ]
    old_cfg, new_cfg = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if key not in BOOKKEEPING_OPTIONS and old_cfg.get(key) != new_cfg.get(key):
            changes.append(f"{key} {old_cfg.get(key)!r} -> {new_cfg.get(key)!r}")
    return changes


def check_writable_parent(folder: Path) -> None:
    """The folder could be created and written, checked without creating anything."""
    try:
        existing = folder
        while not existing.exists():
            existing = existing.parent
        ok = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise UserError(f"--output-dir {str(folder)!r}: not a valid path ({exc})") from None
    except OSError as exc:
        raise UserError(f"--output-dir {folder}: not writable ({exc.strerror or exc})") from None
    if not ok:
        what = "permission denied" if existing.is_dir() else f"{existing} is not a folder"
        raise UserError(f"--output-dir {folder}: not writable ({what})")


# --- while the run writes ----------------------------------------------------------------------------


class _FileLock:
    """An exclusive, non-blocking ``flock`` on a file; the kernel drops it when the process dies."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_acquire(self) -> bool:
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder(self) -> str:
        with contextlib.suppress(OSError):
            return os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return "unknown"

    def still_linked(self) -> bool:
        """The locked file is still the one at ``path`` (an ending run may have just removed it)."""
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(self.path))
        except OSError:
            return False

    def write_pid(self) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class RunFolder:
    """Create the run folder (remembering what it created), hold its lock, and keep run.json's status."""

    def __init__(self, folder: Path, method: str, plugin: str, resolved: dict[str, Any]):
        self.folder = folder
        self.method, self.plugin, self.resolved = method, plugin, resolved
        self.created: Path | None = None  # the outermost folder this run made (removed if it fails early)
        self._lock: _FileLock | None = None
        self.resuming = False  # a resumed run's folder is the earlier run's: never removed

    def open(self, overwrite: bool, resume: bool = False) -> None:
        self.resuming = resume
        self.created = _make_folder(self.folder)
        self._lock = _acquire(self.folder)
        if overwrite:
            remove_artifacts(self.folder)
        self.set_status("running")

    def set_status(self, status: str) -> None:
        owner = {
            "method": self.method,
            "plugin": self.plugin,
            "config_hash": config_hash(self.resolved),
            "status": status,
            "pid": os.getpid(),
            "updated": dt.datetime.now().isoformat(timespec="seconds"),
        }
        tmp = self.folder / f".{OWNER_FILE}.tmp"
        tmp.write_text(json.dumps(owner, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / OWNER_FILE)

    def _remove_own_files(self) -> None:
        """A failed start: remove the folders this run made, or in a folder that existed (empty, or
        emptied by --overwrite) the files it wrote."""
        if self.created is not None:
            remove_created(self.folder, self.created)
        else:
            remove_artifacts(self.folder)

    def close(self, failed: bool) -> None:
        """Release the lock; after a failure before training began, remove what this run created."""
        try:
            if failed and not self.resuming and not has_results(self.folder):
                self._remove_own_files()
            elif failed:
                with contextlib.suppress(OSError):
                    self.set_status("failed")
        finally:
            if self._lock is not None:
                with contextlib.suppress(OSError):
                    (self.folder / LOCK_FILE).unlink()
                self._lock.release()
                self._lock.close()


def _make_folder(folder: Path) -> Path | None:
    """mkdir -p; returns the outermost folder that did not exist before (None if it all existed)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output-dir {folder}: not writable ({exc.strerror or exc})") from None
    return missing[-1] if missing else None


def has_results(folder: Path) -> bool:
    """Whether a run got far enough to leave something worth keeping: a checkpoint (its training
    loop began) or a finished stage's summary, anywhere under ``folder`` (pipelines nest runs)."""
    return any(True for _ in folder.rglob("checkpoints")) or any(True for _ in folder.rglob("summary.json"))


def remove_created(folder: Path, created: Path) -> None:
    """Remove ``folder`` and the empty folders above it up to ``created`` (a parent another run
    has meanwhile written into stays)."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if created != parent and created not in parent.parents:
            break
        with contextlib.suppress(OSError):
            parent.rmdir()


def _acquire(folder: Path) -> _FileLock:
    for _ in range(3):  # the lock file may be removed by an ending run between open and flock
        lock = _FileLock(folder / LOCK_FILE)
        if not lock.try_acquire():
            pid = lock.holder()
            lock.close()
            raise UserError(
                f"--output-dir {folder}: another run (pid {pid}) is writing to this folder; wait for it to end "
                "or choose another --output-dir"
            )
        if lock.still_linked():
            lock.write_pid()
            return lock
        lock.release()
        lock.close()
    raise UserError(f"--output-dir {folder}: could not take its lock file {LOCK_FILE}")


def remove_artifacts(folder: Path) -> None:
    """--overwrite: remove what an earlier run wrote (RUN_ARTIFACTS), never anything else."""
    for name in RUN_ARTIFACTS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
