"""Which files a ``focal-detect`` run considers, and the stable output name of each.

Folders are listed recursively (image suffixes only, hidden entries
skipped), globs expanded, files named explicitly taken whatever their
suffix. Output names are a function of each input's path relative to its
root, never of the order files are found, so adding files never renames
earlier outputs; a name already written by another input (the journal's
``owners``) gets a short hash of the input's resolved path instead.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from focal._files import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS, list_images

__all__ = ["DetectJob", "collect_inputs"]


@dataclass(frozen=True)
class DetectJob:
    """One file the run considered and where its outputs go."""

    source: Path  # input file, as given or listed
    key: str  # output name relative to the out folder, suffix kept ("sub/a.png" -> sub/a.png.mask.png)
    path: str = ""  # the input relative to the out folder: the journal's "path" (set by collect_inputs)
    error: str | None = None  # known without reading it ("dangling symlink"): recorded as failed
    alt_key: str = ""  # the hashed name used when ``key`` belongs to another input


def _resolved(path: Path) -> Path:
    """``path`` with every symlink followed as far as it goes; never raises (``Path.resolve`` does on a loop in 3.11)."""
    return Path(os.path.realpath(path))


def _hashed(key: str, source: Path) -> str:
    """``key`` with a short stable hash of the resolved source before its suffix (``a.jpg`` -> ``a-1f3e5c2b.jpg``)."""
    digest = hashlib.sha256(os.fsencode(_resolved(source))).hexdigest()[:8]  # any name, UTF-8 or not
    head, dot, suffix = key.rpartition(".")
    return f"{head}-{digest}.{suffix}" if dot and "/" not in suffix else f"{key}-{digest}"


def _special_entries(root: Path, exclude: Path | None) -> list[tuple[Path, str | None]]:
    """Entries a listing leaves out but the run must account for.

    Entries with an accepted image suffix that cannot be read as files
    (dangling links, loops, FIFOs) come with their error; regular files of
    a refused image format (:data:`focal._files.UNSUPPORTED_IMAGE_EXTENSIONS`)
    come with ``None``: the decoder's format check gives their record.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or Path(folder, d).resolve() != exclude))
        for name in sorted(files):
            path = Path(folder, name)
            suffix = path.suffix.lower()
            if name.startswith(".") or suffix not in IMAGE_EXTENSIONS | UNSUPPORTED_IMAGE_EXTENSIONS:
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                found.append((path, "symlink loop" if exc.errno == errno.ELOOP else "dangling symlink"))
                continue
            if not stat.S_ISREG(mode):
                found.append((path, "not a regular file"))
            elif suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
                found.append((path, None))
    return found


def _under(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.is_relative_to(folder)


def collect_inputs(inputs: list[str], out: Path | None = None,
                   owners: dict[str, str] | None = None) -> tuple[list[DetectJob], list[str]]:
    """Expand files, folders (recursively) and globs into jobs with stable output names.

    Folders list image suffixes only (:data:`focal._files.IMAGE_EXTENSIONS`, and
    the refused formats' so they get a record,
    hidden entries skipped); a file named explicitly is taken whatever its
    suffix. Dangling symlinks and other unreadable entries of a folder get a
    job with its error. Files under ``out`` are left out of folders and
    globs, so outputs are never read back as inputs.

    Args:
        inputs: files, folders and globs as given.
        out: the output folder (journal paths are relative to it).
        owners: output mask name -> journal path of the input that wrote it
            (a name held by another input is not reused).

    Returns:
        The jobs in a stable order, and the inputs that matched nothing.
    """
    out_res = out.resolve() if out is not None else None
    base = Path(os.path.abspath(out)) if out is not None else Path.cwd()
    owners = owners or {}
    jobs: list[DetectJob] = []
    unmatched: list[str] = []
    taken: set[str] = set()
    seen: set[Path] = set()

    def add(path: Path, key: str, error: str | None = None) -> None:
        resolved = _resolved(path)
        if resolved in seen:
            return
        seen.add(resolved)
        record_path = Path(os.path.relpath(os.path.abspath(path), base)).as_posix()
        alt = _hashed(key, path)
        owner = owners.get(f"{key}.mask.png")
        if key in taken or (owner is not None and owner != record_path):
            key = alt
        taken.add(key)
        jobs.append(DetectJob(path, key, record_path, error, alt))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # The out folder may lie inside an input folder (never the reverse: _prepare_out refuses it).
            files = [f for f in list_images(path) if not _under(f.resolve(), out_res)]
            special = _special_entries(path, out_res)
            entries = sorted([(f, None) for f in files] + special, key=lambda e: e[0].relative_to(path).as_posix())
            for f, error in entries:
                add(f, f.relative_to(path).as_posix(), error)
            if not entries:
                unmatched.append(item)
        elif path.is_file():
            add(path, path.name)  # named explicitly: kept whatever its suffix
        elif path.is_symlink():
            add(path, path.name, "dangling symlink")
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            matches = [m for m in matches if not _under(m.resolve(), out_res)]
            for f in matches:
                add(f, f.name)
            if not matches:
                unmatched.append(item)
    return jobs, unmatched
