"""Private files for secrets: created with mode 0600 from the first byte, replaced atomically.

A secret file is written to a temporary file in the target directory, created by
:func:`tempfile.mkstemp` (``O_CREAT | O_EXCL``, mode 0600: never readable by
anyone else, not even for an instant), flushed to disk, and only then renamed over
the target (:func:`os.replace`, atomic on POSIX). A caller prepares every file it
needs, does the store write, and commits the files only if that succeeded; on
failure it discards them and nothing on disk has changed.

The service env file layout (after the seeds: ``SERVICE_ID`` and ``SERVICE_KEY_FILE``
in the service's environment, the secret alone in its own file)::

    .env                                  SERVICE_ID=billing
                                          SERVICE_KEY_ID=20300101-k7Qz2pXa
                                          SERVICE_KEY_FILE=/srv/billing/service-keys/billing.key
    service-keys/billing.key   (0600)     <64 hex characters>\\n

Other lines of an existing env file are kept; the new file is 0600 whatever the old
one's mode was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
MANAGED_ENV_KEYS = ("SERVICE_ID", "SERVICE_KEY_ID", "SERVICE_KEY_FILE", "SERVICE_KEY")


@dataclass
class PendingFile:
    """A fully written temporary file waiting to be renamed over ``target``."""

    temporary: Path
    target: Path

    def commit(self) -> None:
        os.replace(self.temporary, self.target)
        _fsync_directory(self.target.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


def prepare_private_file(target: Path, text: str) -> PendingFile:
    """Write ``text`` to a new 0600 file next to ``target``; :meth:`PendingFile.commit` puts it in place."""
    directory = target.parent
    if not directory.is_dir():
        raise ValueError(f"directory does not exist: {str(directory)!r}")
    if target.is_dir():
        raise ValueError(f"is a directory: {str(target)!r}")
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    pending = PendingFile(Path(name), target)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # mkstemp already uses 0600; say it explicitly
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        pending.discard()
        raise
    return pending


def ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` (and parents) with mode 0700 if it does not exist."""
    if not directory.exists():
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True)


def env_file_text(existing: str | None, values: Mapping[str, str], header: str) -> str:
    """``existing`` with the managed keys replaced by ``values`` (other lines kept), or a new file."""
    kept: list[str] = []
    if existing is not None:
        for line in existing.splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            if "=" in line and key in MANAGED_ENV_KEYS:
                continue  # ours, rewritten below (a plain SERVICE_KEY=... is dropped: the key file replaces it)
            kept.append(line)
    else:
        kept.extend(f"# {line}" for line in header.splitlines())
    kept.extend(f"{key}={value}" for key, value in values.items())
    return "\n".join(kept) + "\n"


def read_text_if_exists(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {type(exc).__name__}") from None


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
