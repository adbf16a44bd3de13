"""The run journal of a ``focal-detect`` output folder, and the locks that make runs share one safely.

``OUT/results.jsonl`` holds one JSON line per finished image. It is only
ever appended, never rewritten: each line is one ``write`` under an
exclusive ``flock`` on the journal, made after the image's files are
renamed into place. A reader takes the last record per input (``"path"``)
and skips lines it cannot parse (a line cut by ``kill -9`` is closed with a
newline by the next writer, so it can never merge with a good one).

``OUT/.focal-detect.lock`` is the run lock file. Every run holds a shared
``lockf`` lock on its byte 0 for as long as it runs (a run that gets it
exclusively knows it is alone and may delete temporary files left by a
killed run), and an exclusive ``lockf`` lock on one byte per output name
while it works on that image (the byte's offset is a hash of the name), so
two runs never write the same outputs at once. The kernel drops every lock
of a process that dies, ``kill -9`` included.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from pathlib import Path

__all__ = ["JOURNAL_NAME", "LOCK_NAME", "Journal", "RunLock", "read_journal", "read_journal_state"]

JOURNAL_NAME = "results.jsonl"
LOCK_NAME = ".focal-detect.lock"

# The temporary names of focal._files.atomic_output: ".STEM.PID-HEX8.tmpSUFFIX".
_TEMP_NAME = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp(\.[^.]+)?$")


def _parse(lines: list[bytes], latest: dict[str, dict], owners: dict[str, str], offsets: dict[str, int],
           start: int) -> None:
    """Folds complete journal lines (newline stripped) into the per-input state."""
    pos = start
    for line in lines:
        here, pos = pos, pos + len(line) + 1
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a line cut by a killed run
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            continue
        latest[rec["path"]] = rec
        offsets[rec["path"]] = here
        mask = rec.get("mask")
        if rec.get("error") is None and isinstance(mask, str):
            owners.setdefault(mask, rec["path"])


def read_journal(path: str | Path) -> dict[str, dict]:
    """The last record per input of a journal (empty if there is none).

    Args:
        path: a ``results.jsonl``.

    Returns:
        ``{record["path"]: record}``; unparseable lines are skipped.
    """
    return read_journal_state(path)[0]


def read_journal_state(path: str | Path) -> tuple[dict[str, dict], dict[str, str]]:
    """:func:`read_journal`, plus which input owns each output mask name (see :attr:`Journal.owners`)."""
    path = Path(path)
    latest: dict[str, dict] = {}
    owners: dict[str, str] = {}
    if path.is_file():
        _parse(path.read_bytes().split(b"\n"), latest, owners, {}, 0)
    return latest, owners


class Journal:
    """An open ``results.jsonl``: appends under ``flock``, and a view of every run's records.

    Args:
        folder: the output folder (the file is created if missing).

    Attributes:
        latest: the last record per input seen so far (:meth:`refresh` reads
            what other runs appended since).
        owners: output mask name -> the input of the first good record that
            wrote it, so a name is never given to a second input.
        start: journal size when opened; records past it were written
            during this run (``--overwrite`` redoes only older ones).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self._lock = threading.Lock()  # the in-memory state is shared by the prefetch and main threads
        self._read = 0  # bytes parsed so far
        self.latest: dict[str, dict] = {}
        self.owners: dict[str, str] = {}
        self._offsets: dict[str, int] = {}
        self.refresh()
        self.start = self._read

    def refresh(self) -> None:
        """Reads the complete lines appended since the last call (by any run)."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            try:
                size = os.fstat(self._fd).st_size
                data = os.pread(self._fd, size - self._read, self._read) if size > self._read else b""
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            end = data.rfind(b"\n")
            if end < 0:
                return  # nothing new, or only the cut tail of a killed writer
            _parse(data[:end].split(b"\n"), self.latest, self.owners, self._offsets, self._read)
            self._read += end + 1

    def written_since_start(self, path: str) -> bool:
        """Whether the last record of ``path`` was appended after this journal was opened."""
        with self._lock:
            return self._offsets.get(path, -1) >= self.start

    def append(self, record: dict) -> None:
        """Appends one record as one line, in one ``write``, under an exclusive lock."""
        line = (json.dumps(record) + "\n").encode()
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(self._fd).st_size
                if size and os.pread(self._fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # close a line cut by a killed writer
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class RunLock:
    """The run lock file: a shared lock for the run, and one exclusive byte per output name being written.

    POSIX record locks belong to the process, so one ``RunLock`` per process
    and output folder (closing any descriptor of the file drops them all).

    Args:
        folder: the output folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self.alone = self._try(fcntl.LOCK_EX, 0)
        if not self.alone:
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, 0)

    def _try(self, kind: int, offset: int) -> bool:
        try:
            fcntl.lockf(self._fd, kind | fcntl.LOCK_NB, 1, offset)
        except OSError:  # EACCES or EAGAIN: held by another process
            return False
        return True

    def remove_stale_temporaries(self) -> int:
        """When no other run is active, deletes temporary files of killed runs; then shares the run lock.

        Returns:
            How many were deleted.
        """
        removed = 0
        if self.alone:
            for path in self.folder.rglob(".*.tmp*"):
                if _TEMP_NAME.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, 0)  # let other runs in
            self.alone = False
        return removed

    @staticmethod
    def _offset(name: str) -> int:
        return 1 + int.from_bytes(hashlib.sha256(os.fsencode(name)).digest()[:7], "big")

    def try_claim(self, name: str) -> bool:
        """Takes the output name ``name`` unless another run holds it."""
        return self._try(fcntl.LOCK_EX, self._offset(name))

    def claim(self, name: str) -> None:
        """Takes the output name ``name``, waiting for another run to release it."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, self._offset(name))

    def release(self, name: str) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._offset(name))

    def close(self) -> None:
        """Releases every lock of this run."""
        os.close(self._fd)
