"""Atomic file writes and hashing: nothing half-written is ever left under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecnn.errors import UsageError


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

    An output is refused when it is an input file (under any name: links and ``..`` are resolved) or lies inside
    an input folder (a data folder, whose next read would then include it).

    Raises:
        UsageError: naming the output and the input it would clobber.
    """
    sources = [Path(p).resolve() for p in inputs if p is not None]
    for output in outputs:
        if output is None:
            continue
        target = Path(output).resolve()
        for source in sources:
            if target == source or (source.is_dir() and source in target.parents):
                relation = "is" if target == source else "is inside"
                raise UsageError(
                    f"output {output} {relation} the input {source}: write it somewhere else, never over an input"
                )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``path``; rename it over ``path`` on success.

    The temporary file keeps the final suffix because some writers (Keras) insist on it. On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    make_folder(final.parent, what="output folder")
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=f".tmp{final.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


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
