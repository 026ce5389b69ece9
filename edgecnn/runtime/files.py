"""Atomic file writes and hashing: nothing half-written is ever left under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from edgecnn.errors import UsageError


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the sidecar of a ``.tflite`` model lives: same folder and stem, ``.json`` suffix."""
    return Path(model_path).with_suffix(".json")


def check_output_path(path: str | os.PathLike[str], *, suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that ``path`` can be written: its folder exists or can be created (it is created
    when the file is written, as ``mkdir -p`` would), the path is not a folder, and its suffix is right.

    Raises:
        UsageError: the path is a folder, its suffix is not one of ``suffixes``, or its folder cannot be made.
    """
    out = Path(path)
    if suffixes and out.suffix.lower() not in suffixes:
        raise UsageError(f"output {out} must end with {' or '.join(suffixes)}")
    if out.is_dir():
        raise UsageError(
            f"output {out} is a folder: give a file name such as {out / ('model' + (suffixes or ('',))[0])}"
        )
    check_folder(out.parent, what="output folder")
    return out


def check_folder(folder: str | os.PathLike[str], *, what: str = "folder") -> Path:
    """Check that ``folder`` is a writable folder or can be created as one (nothing is created here).

    Raises:
        UsageError: it, or the nearest part of its path that exists, is a file or is not writable.
    """
    path = Path(folder)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot use the {what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into the {what} {path}: {existing} is not writable (choose another place)")
    return path


def make_folder(folder: str | os.PathLike[str], *, what: str = "folder") -> Path:
    """Create ``folder`` and its parents if missing.

    Raises:
        UsageError: it exists as a file, or cannot be created (permissions, a file on the way).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file: give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    return path


def refuse_inputs(
    outputs: Iterable[str | os.PathLike[str] | None], inputs: Iterable[str | os.PathLike[str] | None]
) -> None:
    """Refuse, before any work, an output that would overwrite one of the command's inputs.

    An output is refused when it is an input file or lies inside an input folder (a data or calibration folder,
    whose next read would then include it). Names are compared as files, not as text: links and ``..`` are
    resolved, and an existing file or folder matches under any name the file system gives it (another case on a
    case-insensitive disk, a hard link). A ``.tflite`` input brings its sidecar (the ``.json`` beside it) along,
    whether or not it exists yet, so no command can replace or invent a model's description.

    Raises:
        UsageError: naming the output and the input it would clobber.
    """

    sources: list[Path] = []
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        sources.append(source)
        if source.suffix.lower() == ".tflite":
            sources.append(sidecar_path(source))
    for output in outputs:
        if output is None:
            continue
        target = Path(output).resolve()
        for source in sources:
            inside = source.is_dir() and any(_same_file(folder, source) for folder in target.parents)
            if _same_file(target, source) or inside:
                relation = "is inside" if inside else "is"
                raise UsageError(
                    f"output {output} {relation} the input {source}: write it somewhere else, never over an input"
                )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two resolved paths name the same file: by identity when both exist, else by name."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): two different names are two different files
        return False


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``path``; rename it over ``path`` on success.

    The temporary file keeps the final suffix because some writers (Keras) insist on it. On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    make_folder(final.parent, what="output folder")
    tmp = _temporary(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Yield temporary paths for several files; on success rename them over ``paths`` together: all or none.

    For files that only make sense together (a model and its sidecar). Each temporary lies in its final file's
    folder, so the renames are atomic. If the block or a rename fails, the temporaries are removed and every final
    file that was already replaced gets its old content back (or is removed, if it did not exist).

    Raises:
        UsageError: one of ``paths`` is a folder (checked before the block runs, and again before renaming).
    """
    finals = [Path(p) for p in paths]
    _refuse_folders(finals)
    for final in finals:
        make_folder(final.parent, what="output folder")
    temps: list[Path] = []
    try:
        for final in finals:
            temps.append(_temporary(final))
        yield list(temps)
        _refuse_folders(finals)  # one may have appeared while the block wrote
        _replace_all(temps, finals)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


def _refuse_folders(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a folder (move it away or choose another output)")


def _replace_all(temps: list[Path], finals: list[Path]) -> None:
    """Rename each temporary over its final file; if one rename fails, undo those already done."""
    done: list[tuple[Path, Path | None]] = []  # (final, its backup: None when it did not exist)
    try:
        for tmp, final in zip(temps, finals):
            backup = _backup(final)
            try:
                os.replace(tmp, final)
            except BaseException:
                _remove(backup)
                raise
            done.append((final, backup))
    except BaseException:
        for final, backup in reversed(done):
            # Best effort: the error that stopped the renames is the one to report.
            with suppress(OSError):
                if backup is not None:
                    os.replace(backup, final)
                else:
                    final.unlink()
        raise
    finally:
        for _, backup in done:
            _remove(backup)


def _remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _backup(final: Path) -> Path | None:
    """A copy of ``final`` beside it, to put back if a later rename fails; None when ``final`` does not exist."""
    if not final.is_file():
        return None
    backup = _temporary(final)
    try:
        # A hard link costs nothing and keeps ``final`` in place; where links are not allowed, copy.
        backup.unlink()
        os.link(final, backup)
    except OSError:
        shutil.copy2(final, backup)
    return backup


def _temporary(final: Path) -> Path:
    """A new empty file beside ``final`` (same folder, same suffix), with the mode an ordinary open() gives."""
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=f".tmp{final.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Canonical JSON text (sorted keys, two-space indent, trailing newline), so equal data gives equal bytes."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as canonical JSON to ``path`` atomically."""
    write_bytes_atomic(path, dumps_json(obj).encode())


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def captured_native_stderr(
    on_error: Callable[[str], None] | None = None, *, lines: list[str] | None = None
) -> Iterator[None]:
    """Capture what native code (TensorFlow, LiteRT, TFLite Micro) writes to file descriptor 2.

    TensorFlow's converter and LiteRT's delegate print INFO lines straight to the C-level stderr, which would
    bury edgecnn's own output: they are held in a temporary file. If the block raises, the text is handed to
    ``on_error`` (if given) so a real failure can keep its detail; with ``lines``, the text is also appended there
    whatever happens (TFLite Micro reports its arena use that way, from a call that succeeds). Python's
    ``sys.stderr`` is pointed at the real stderr meanwhile, so edgecnn's own progress lines still get through.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to capture
        yield
        return
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as sink:
        python_stderr.flush()
        os.dup2(sink.fileno(), 2)
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115

        def captured() -> str:
            os.dup2(saved, 2)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if lines is not None:
                lines.extend(text.splitlines())
            return text

        try:
            yield
        except Exception:
            text = captured()
            if text and on_error is not None:
                on_error(text)
            raise
        except BaseException:  # Ctrl-C or an exit: the native chatter is not the news
            captured()
            raise
        else:
            captured()
        finally:
            sys.stderr.close()
            sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)


# --- temporaries ---------------------------------------------------------------------------------------------------
# Everything a run puts in the temporary folder (its own folders, TensorFlow's SavedModels and autograph files, a
# subprocess's scratch files) lands in one folder per process under one folder per user, named by the process id:
# a run killed before it could clean up (kill -9, a power cut) leaves one folder, which the next run removes.

_TEMPORARIES_PREFIX = "edgecnn-"


def temporaries_root() -> Path:
    """``$TMPDIR/edgecnn-<uid>``: the folder edgecnn's temporaries live under (created on demand, mode 0700)."""
    owner = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(_system_tempdir()) / f"{_TEMPORARIES_PREFIX}{owner}"


def _system_tempdir() -> str:
    """The temporary folder the system gives (``$TMPDIR``...), even while :func:`owned_temporaries` is in force."""
    return _OWNED.get("system") or tempfile.gettempdir()


_OWNED: dict[str, str] = {}
"""While :func:`owned_temporaries` is in force: ``system`` (the temporary folder before) and ``folder`` (this
process's own)."""


def _private_root() -> Path | None:
    """:func:`temporaries_root`, created if missing; None when it is not a folder only this user owns (someone else
    made it first, or it is a link), so nothing is written where another user could read or plant it."""
    root = temporaries_root()
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        status = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(status.st_mode) or (hasattr(os, "getuid") and status.st_uid != os.getuid()):
        return None
    return root


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts as alive: its folder is not ours)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temporaries() -> list[Path]:
    """Remove the folders that killed runs left under :func:`temporaries_root` (those whose process is gone).

    Cheap (one listing); never raises. Returns what was removed.
    """
    root = _private_root()
    if root is None:
        return []
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        pid, _, _ = entry.name.partition("-")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


@contextmanager
def owned_temporaries() -> Iterator[Path | None]:
    """Point every temporary file of this process (and of the programs it starts) at a folder edgecnn owns.

    Removes what killed runs left first (:func:`clean_stale_temporaries`), then makes ``<root>/<pid>-<random>``
    and sets it as Python's ``tempfile.tempdir`` and as ``TMPDIR`` (TensorFlow's autograph files and converter
    SavedModels, subprocesses' scratch files go there too), until the block ends; the folder is then removed.
    Yields the folder, or None when no private folder could be made (temporaries then go where they always do).
    """
    if "folder" in _OWNED:  # already in force (a command run from inside another): one folder per process
        yield Path(_OWNED["folder"])
        return
    clean_stale_temporaries()
    root = _private_root()
    folder = None
    if root is not None:
        try:
            folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        except OSError:
            folder = None
    if folder is None:
        yield None
        return
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    _OWNED.update(system=_system_tempdir(), folder=str(folder))
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        _OWNED.clear()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def temporary_folder(prefix: str = "work-") -> Iterator[Path]:
    """A temporary folder removed when the block ends, inside this process's own folder under
    :func:`temporaries_root` (named ``<pid>-<prefix>...`` there when no :func:`owned_temporaries` is in force,
    so a killed process's folder is still recognised and removed by the next run)."""
    if "folder" in _OWNED:
        parent, name = Path(_OWNED["folder"]), prefix
    else:
        parent, name = _private_root() or Path(tempfile.gettempdir()), f"{os.getpid()}-{prefix}"
    folder = Path(tempfile.mkdtemp(prefix=name, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
