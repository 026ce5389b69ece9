"""Image-folder datasets: ``ROOT/<class>/<image>``, class-balanced subsets, seeded splits, the embedded default.

Classes are the sub-folders of ``ROOT`` sorted by name; their index is the label. Files are taken in sorted
order so a subset such as "the first 50 images of each class" is the same on every machine. Hidden files
(names starting with a dot) are ignored; any other file that is not a readable image is skipped with a
reason that reaches the report, or is an error with ``strict``.

Hostile entries, each skipped with its reason (an error with ``strict``), never silently dropped:

- FIFOs, sockets and devices: never opened (a FIFO named ``x.png`` would block the read forever);
- symbolic links (to files or folders) that resolve outside the data folder: not followed unless
  ``follow_links``, so a dataset cannot pull in ``/etc/passwd`` or a whole disk; links inside it are followed;
- broken links, and links back to a folder being scanned (a loop): skipped, so a scan always ends;
- folders that cannot be listed: skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.errors import DatasetError, MissingDependencyError
from edgecnn.runtime.files import atomic_path
from edgecnn.runtime.preprocess import ImageReadError, Preprocessing, file_kind, load_image
from edgecnn.runtime.progress import Progress, ProgressFn, no_progress

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


@dataclass(frozen=True)
class Sample:
    """One image file and the index of its class."""

    path: Path
    label: int


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form for reports."""
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class ImageFolder:
    """The listing of an image folder: its classes and the image files of each."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class LoadedImages:
    """Preprocessed images ready for a model.

    Attributes:
        images: float32 array ``(N, height, width, channels)``.
        labels: int64 array ``(N,)`` of class indices.
        paths: the file of each image.
        skipped: files that could not be read (and non-image files found while scanning).
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _visible(entries: Iterable[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _inside(real: str, root: str) -> bool:
    """Whether the resolved path ``real`` is ``root`` or below it (both resolved)."""
    try:
        return os.path.commonpath([real, root]) == root
    except ValueError:  # Windows: on another drive
        return False


def _link_problem(path: Path, root: str, *, follow_links: bool) -> tuple[str | None, str]:
    """Why the symbolic link ``path`` is not followed (None when it is), and where it leads.

    Args:
        path: a symbolic link found while scanning.
        root: the resolved data folder.
        follow_links: follow links that leave ``root``.
    """
    try:
        real = os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):  # a missing target, or a chain of links that never ends
        return "broken symbolic link (its target is missing or it loops)", ""
    if not follow_links and not _inside(real, root):
        return f"symbolic link to {real}, outside the data folder: not followed", real
    return None, real


def _files_under(
    folder: Path, *, root: Path | None = None, follow_links: bool = False
) -> tuple[list[Path], list[Skipped]]:
    """Every non-hidden regular file below ``folder``, sorted, and the entries left out with their reasons.

    Hidden folders (``.ipynb_checkpoints``...) are not entered and hidden files are ignored. FIFOs, sockets,
    devices, broken links, links leaving ``root`` (unless ``follow_links``) and links back to a folder being
    scanned are left out with a reason. ``os.scandir`` gives each entry's type without a stat per file, which
    matters for folders of 50,000 images; only links and odd entries cost a system call.

    Args:
        folder: the folder to search.
        root: the data folder links must stay inside (``folder`` itself by default).
        follow_links: follow links that resolve outside ``root`` too.
    """
    top = os.path.realpath(root if root is not None else folder)
    found: list[Path] = []
    skipped: list[Skipped] = []
    # Iterative, each folder with the resolved folders above it: a link back to one of them is a loop.
    pending: list[tuple[Path, tuple[str, ...]]] = [(folder, (os.path.realpath(folder),))]
    while pending:
        current, above = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(current, f"folder could not be listed ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            real = os.path.join(above[-1], entry.name)
            if entry.is_symlink():
                problem, real = _link_problem(path, top, follow_links=follow_links)
                if problem is not None:
                    skipped.append(Skipped(path, problem))
                    continue
            if entry.is_dir():
                if real in above:
                    skipped.append(Skipped(path, f"symbolic link loop (back to {real}): not followed"))
                else:
                    pending.append((path, (*above, real)))
            elif entry.is_file():
                found.append(path)
            else:
                skipped.append(Skipped(path, f"not a regular file ({_kind(entry)}): not read"))
    return sorted(found), sorted(skipped, key=lambda s: s.path)


def _kind(entry: os.DirEntry[str]) -> str:
    """What an entry that is neither a folder nor a regular file is (through a link: what it leads to)."""
    try:
        return file_kind(entry.stat().st_mode)
    except OSError:  # gone since it was listed
        return "missing"


def _regular_file_problem(path: Path) -> str | None:
    """Why a path named explicitly is not read (a FIFO, socket, device), or None for a regular file."""
    mode = os.stat(path).st_mode
    return None if stat.S_ISREG(mode) else f"not a regular file ({file_kind(mode)}): not read"


def _class_folders(base: Path, *, follow_links: bool) -> tuple[list[Path], list[Skipped]]:
    """The class folders of ``base``, and the linked ones not followed (leaving ``base``, broken or looping)."""
    top = os.path.realpath(base)
    folders: list[Path] = []
    skipped: list[Skipped] = []
    for path in _visible(base.iterdir()):
        if path.is_symlink():
            problem, _ = _link_problem(path, top, follow_links=follow_links)
            if problem is not None:
                skipped.append(Skipped(path, problem))
                continue
        if path.is_dir():
            folders.append(path)
    return folders, skipped


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _not_an_image(path: Path) -> Skipped:
    return Skipped(path, f"not an image file ({path.suffix or 'no extension'})")


def scan_folder(
    root: str | os.PathLike[str],
    *,
    limit_per_class: int | None = None,
    labels: Sequence[str] | None = None,
    follow_links: bool = False,
) -> ImageFolder:
    """List the classes and image files of ``root`` without decoding anything.

    Args:
        root: folder holding one sub-folder of images per class.
        limit_per_class: keep only the first N image files (sorted by name) of each class.
        labels: a model's class names: each folder's label is its index there (a folder may be missing,
            so a subset of classes can be checked), instead of its position among the folders.
        follow_links: follow symbolic links (class folders, folders and files) that lead outside ``root``;
            by default they are skipped with a reason.

    Raises:
        DatasetError: ``root`` does not exist, holds no class folders, a class folder holds no images, or a
            folder is not one of ``labels``.
    """
    base = Path(root)
    if not base.exists():
        raise DatasetError(f"data folder {base} does not exist: check the path")
    if not base.is_dir():
        raise DatasetError(f"{base} is not a folder: give a folder with one sub-folder of images per class")
    if limit_per_class is not None and limit_per_class < 1:
        raise DatasetError(f"--limit-per-class must be at least 1, not {limit_per_class}")
    class_dirs, skipped = _class_folders(base, follow_links=follow_links)
    if not class_dirs:
        links = f" ({len(skipped)} linked folder(s) not followed: {skipped[0].reason})" if skipped else ""
        raise DatasetError(
            f"data folder {base} has no class folders{links}: put each class's images in {base}/<class name>/"
        )
    names = [p.name for p in class_dirs]
    if labels is not None:
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise DatasetError(
                f"class folder {base / unknown[0]} is not one of the model's labels ({', '.join(labels)}): "
                "rename or remove it"
            )
    samples: list[Sample] = []
    for position, class_dir in enumerate(class_dirs):
        label = list(labels).index(class_dir.name) if labels is not None else position
        files, left_out = _files_under(class_dir, root=base, follow_links=follow_links)
        skipped += left_out
        images = [p for p in files if _is_image(p)]
        if not images:
            raise DatasetError(
                f"class folder {class_dir} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                "add images or remove the folder"
            )
        skipped += [_not_an_image(p) for p in files if not _is_image(p)]
        samples += [Sample(p, label) for p in images[:limit_per_class]]
    return ImageFolder(
        root=base, classes=list(labels) if labels is not None else names, samples=samples, skipped=skipped
    )


class ImageStream:
    """The images of a list of files, decoded and preprocessed a batch at a time: never all in memory at once.

    Iterating yields ``(images, labels)`` batches: float32 ``(n, height, width, channels)`` and int64 ``(n,)``.
    The first pass reads every sample; unreadable files are skipped and listed in :attr:`skipped` (or, with
    ``strict``, stop it with :class:`~edgecnn.errors.DatasetError`). After it, :attr:`labels` and :attr:`paths`
    describe the images that were read, in order, and a further pass (validation's stages) reads exactly those
    files again.

    Args:
        samples: the files to read, with their labels.
        spec: the model's preprocessing.
        batch_size: images per batch.
        strict: fail on the first unreadable file instead of skipping it.
        skipped: files already left out while scanning; reported with the unreadable ones.
        on_progress: called after each file of the first pass.

    Attributes:
        seconds: seconds spent so far reading and decoding files (``"decode"``) and preprocessing their pixels
            (``"preprocess"``), over every pass.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        spec: Preprocessing,
        *,
        batch_size: int = 64,
        strict: bool = False,
        skipped: Sequence[Skipped] = (),
        on_progress: ProgressFn | None = None,
    ) -> None:
        if strict and skipped:
            first = skipped[0]
            raise DatasetError(f"{first.path}: {first.reason} (remove it, or drop --strict to skip it)")
        self._samples = list(samples)
        self._spec = spec
        self._batch_size = max(1, batch_size)
        self._strict = strict
        self._on_progress = on_progress
        self._read: list[Sample] | None = None  # known after the first pass
        self.skipped: list[Skipped] = list(skipped)
        self.seconds: dict[str, float] = {"decode": 0.0, "preprocess": 0.0}

    def __len__(self) -> int:
        """Images read (after the first pass), or files to read (before it)."""
        return len(self._read if self._read is not None else self._samples)

    @property
    def labels(self) -> np.ndarray:
        """int64 class index of each image read (complete once the first pass has ended)."""
        return np.asarray([sample.label for sample in self._read or ()], dtype=np.int64)

    @property
    def paths(self) -> list[Path]:
        """The file of each image read (complete once the first pass has ended)."""
        return [sample.path for sample in self._read or ()]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        first = self._read is None
        samples = self._samples if first else list(self._read or ())
        read: list[Sample] = []
        arrays: list[np.ndarray] = []
        labels: list[int] = []
        for sample in samples:
            try:
                arrays.append(load_image(sample.path, self._spec, seconds=self.seconds))
            except ImageReadError as exc:
                if not first:
                    raise DatasetError(
                        f"{sample.path} was read a moment ago and now cannot be ({exc}): do not change the image "
                        "folder while edgecnn reads it"
                    ) from None
                if self._strict:
                    raise DatasetError(
                        f"{sample.path} is not a readable image ({exc}): remove or replace it, or drop --strict"
                    ) from None
                self.skipped.append(Skipped(sample.path, f"unreadable image: {exc}"))
            else:
                read.append(sample)
                labels.append(sample.label)
            if first and self._on_progress is not None:
                self._on_progress(1)
            if len(arrays) == self._batch_size:
                yield np.stack(arrays), np.asarray(labels, dtype=np.int64)
                arrays, labels = [], []
        if first and not read:
            raise DatasetError(f"none of the {len(samples)} image files could be read: check the folder")
        if arrays:
            yield np.stack(arrays), np.asarray(labels, dtype=np.int64)
        if first:
            self._read = read


def load_images(
    samples: Sequence[Sample],
    spec: Preprocessing,
    *,
    strict: bool = False,
    skipped: Sequence[Skipped] = (),
    on_progress: ProgressFn | None = None,
) -> LoadedImages:
    """Decode and preprocess ``samples`` with ``spec``, all into one array (see :class:`ImageStream` to stream).

    Args:
        samples: the files to read, with their labels.
        spec: the model's preprocessing.
        strict: fail on the first unreadable file instead of skipping it.
        skipped: files already left out while scanning; reported with the unreadable ones.
        on_progress: called after each image.

    Raises:
        DatasetError: with ``strict``, a file could not be read (or a non-image file was found); also when
            no image at all could be read.
    """
    stream = ImageStream(samples, spec, batch_size=256, strict=strict, skipped=skipped, on_progress=on_progress)
    batches = [images for images, _ in stream]
    return LoadedImages(
        images=np.concatenate(batches).astype(np.float32, copy=False),
        labels=stream.labels,
        paths=stream.paths,
        skipped=stream.skipped,
    )


def stream_labelled(
    root: str | os.PathLike[str],
    labels: Sequence[str],
    spec: Preprocessing,
    *,
    batch_size: int = 64,
    limit_per_class: int | None = None,
    strict: bool = False,
    on_progress: Progress | None = None,
    progress_label: str = "reading images",
    follow_links: bool = False,
) -> ImageStream:
    """Scan a labelled folder whose classes are (a subset of) a model's ``labels``; its images, as a stream.

    Scanning happens now (a bad folder fails here); decoding happens as the stream is iterated, and the progress
    shown as ``progress_label`` advances with each file read. Files that are not images are skipped and listed,
    as are unreadable images unless ``strict``; links leaving ``root`` are followed only with ``follow_links``
    (see :func:`scan_folder`).
    """
    folder = scan_folder(root, limit_per_class=limit_per_class, labels=labels, follow_links=follow_links)
    advance = (on_progress or no_progress)(progress_label, len(folder.samples))
    return ImageStream(
        folder.samples, spec, batch_size=batch_size, strict=strict, skipped=folder.skipped, on_progress=advance
    )


def load_labelled(
    root: str | os.PathLike[str],
    labels: Sequence[str],
    spec: Preprocessing,
    *,
    limit_per_class: int | None = None,
    strict: bool = False,
    on_progress: Progress | None = None,
    follow_links: bool = False,
) -> LoadedImages:
    """Scan a labelled folder whose classes are (a subset of) a model's ``labels`` and preprocess its images.

    Files that are not images are skipped and listed, as are unreadable images unless ``strict``; links leaving
    ``root`` are followed only with ``follow_links`` (see :func:`scan_folder`).
    """
    folder = scan_folder(root, limit_per_class=limit_per_class, labels=labels, follow_links=follow_links)
    advance = (on_progress or no_progress)("loading images", len(folder.samples))
    return load_images(folder.samples, spec, strict=strict, skipped=folder.skipped, on_progress=advance)


def _by_class(samples: Sequence[Sample]) -> dict[int, list[Sample]]:
    groups: dict[int, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.label, []).append(sample)
    return dict(sorted(groups.items()))


def split_samples(
    samples: Sequence[Sample], *, validation_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Seeded, per-class (stratified) split into training and validation samples.

    Each class gives ``round(n * validation_fraction)`` of its files to validation (at least one when the
    fraction is positive and the class has two or more). The result depends only on the file list and seed.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in [0, 1), not {validation_fraction}")
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    validation: list[Sample] = []
    for group in _by_class(samples).values():
        order = rng.permutation(len(group))
        count = round(len(group) * validation_fraction)
        if validation_fraction > 0 and count == 0 and len(group) >= 2:
            count = 1
        validation += [group[i] for i in sorted(order[:count])]
        train += [group[i] for i in sorted(order[count:])]
    return train, validation


def balanced_subset(samples: Sequence[Sample], size: int, *, seed: int) -> list[Sample]:
    """Pick ``size`` samples spread evenly over the classes, seeded (all of them when there are fewer).

    Classes take turns, each drawing from its own seeded shuffle, so small subsets stay class-balanced.
    """
    rng = np.random.default_rng(seed)
    queues = [[group[i] for i in rng.permutation(len(group))] for group in _by_class(samples).values()]
    chosen: list[Sample] = []
    depth = 0
    while len(chosen) < size and any(depth < len(q) for q in queues):
        chosen += [q[depth] for q in queues if depth < len(q)][: size - len(chosen)]
        depth += 1
    return chosen


def collect_images(
    inputs: Sequence[str | os.PathLike[str]], *, follow_links: bool = False
) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders (searched recursively, sorted) into image files to classify.

    A file named explicitly is tried whatever its extension (and through a link: the user named it), but only
    if it is a regular file. Inside a folder, links that lead outside that folder are followed only with
    ``follow_links``.

    Returns:
        The image files, and the entries left out (non-image files, FIFOs and devices, links not followed).

    Raises:
        DatasetError: a path does not exist, or nothing to classify was found.
    """
    images: list[Path] = []
    skipped: list[Skipped] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise DatasetError(f"{path} does not exist: check the path")
        if path.is_dir():
            files, left_out = _files_under(path, follow_links=follow_links)
            images += [f for f in files if _is_image(f)]
            skipped += left_out + [_not_an_image(f) for f in files if not _is_image(f)]
        elif (problem := _regular_file_problem(path)) is not None:
            skipped.append(Skipped(path, problem))
        else:
            images.append(path)  # named explicitly: try to read it whatever its extension
    if not images:
        why = f" ({skipped[0].path}: {skipped[0].reason})" if len(skipped) == 1 else ""
        raise DatasetError(f"no image files found in {', '.join(str(i) for i in inputs)}{why}")
    return images, skipped


def scan_images(root: str | os.PathLike[str], *, follow_links: bool = False) -> ImageFolder:
    """Image files anywhere below ``root``, for unlabelled uses such as calibration.

    Files are grouped by the top-level sub-folder they sit in (files directly in ``root`` form one group), so
    :func:`balanced_subset` can still spread a subset over the classes of a labelled folder, while a flat
    folder of images works too.

    Links that lead outside ``root`` are followed only with ``follow_links``.

    Raises:
        DatasetError: ``root`` does not exist or holds no image files.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder {base} does not exist: check the path")
    images, skipped = collect_images([base], follow_links=follow_links)

    def group(path: Path) -> str:
        parts = path.relative_to(base).parts
        return parts[0] if len(parts) > 1 else ""

    groups = sorted({group(p) for p in images})
    index = {name: i for i, name in enumerate(groups)}
    samples = [Sample(p, index[group(p)]) for p in images]
    return ImageFolder(root=base, classes=groups, samples=samples, skipped=skipped)


def write_digits(root: str | os.PathLike[str], *, test_fraction: float = 0.2, seed: int = 0) -> tuple[Path, Path]:
    """Write scikit-learn's handwritten digits as PNG image folders: the embedded default dataset.

    The 1,797 8x8 digits (UCI, 43 writers) ship inside scikit-learn, so the demo needs no network. Their
    0-16 intensities are stretched to 0-255 grayscale PNGs and split, seeded and per class, into
    ``root/train/<digit>/`` and ``root/test/<digit>/``; the files then go through the same image-folder path
    as a user's own data.

    Returns:
        The train and test folders.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", extra="train", purpose="use the embedded digits dataset") from None
    from PIL import Image

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    samples = [Sample(Path(f"{i:04d}.png"), int(t)) for i, t in enumerate(digits.target)]
    train, test = split_samples(samples, validation_fraction=test_fraction, seed=seed)
    base = Path(root)
    folders = []
    for split, chosen in (("train", train), ("test", test)):
        for digit in range(10):
            (base / split / str(digit)).mkdir(parents=True, exist_ok=True)
        # A folder left by a run with another seed holds images of the other split: remove them, so that no
        # digit is ever both trained on and held out.
        wanted = {base / split / str(s.label) / s.path.name for s in chosen}
        for stale in set(_files_under(base / split)[0]) - wanted:
            stale.unlink()
        for sample in chosen:
            target = base / split / str(sample.label) / sample.path.name
            index = int(sample.path.stem)
            if not target.exists():
                with atomic_path(target) as tmp:
                    Image.fromarray(pixels[index]).save(tmp, format="PNG")
        folders.append(base / split)
    return folders[0], folders[1]
