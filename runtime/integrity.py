"""Model files are checked against their manifest's sha256 before they run.

A swapped or edited ``model.onnx`` (other weights, one tensor scaled) would
otherwise run and give other masks with exit 0. Hashing a 12 MB graph takes
tens of milliseconds, so a verified file's digest is remembered under
``cache_dir("verified")``, keyed by its resolved path, size and
modification time: the next open costs a ``stat``, and any change to the
file makes it hash again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from focal._files import cache_dir, write_atomic
from focal.runtime.manifest import sha256_file

__all__ = ["IntegrityError", "verify_file"]


class IntegrityError(ValueError):
    """A model file is not the one its manifest describes."""


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _record(stamp: tuple[str, int, int]) -> Path:
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32]
    return cache_dir("verified") / f"{key}.json"


def verify_file(path: str | Path, expected: str, use_cache: bool = True) -> bool:
    """Raises :class:`IntegrityError` unless ``path``'s sha256 is ``expected``.

    Args:
        path: the model file.
        expected: hex sha256 from the manifest.
        use_cache: trust a digest recorded for this exact (path, size, mtime).

    Returns:
        True when the file was hashed now, False when the cache vouched for it.
    """
    path = Path(path)
    stamp = _stamp(path)
    record = _record(stamp)
    if use_cache and record.is_file():
        try:
            if json.loads(record.read_text()).get("sha256") == expected:
                return False
        except (OSError, json.JSONDecodeError):
            pass  # an unreadable record is simply not trusted
    digest = sha256_file(path)
    if digest != expected:
        raise IntegrityError(f"{path}: sha256 {digest[:16]}... is not the manifest's {expected[:16]}...: the file "
                             "was changed or replaced after export (re-export it, or pass --no-verify to run it anyway)")
    if use_cache:
        try:
            write_atomic(record, json.dumps({"path": stamp[0], "size": stamp[1], "mtime_ns": stamp[2],
                                             "sha256": digest}).encode())
        except OSError:
            pass  # a read-only cache only costs the next open a hash
    return True
