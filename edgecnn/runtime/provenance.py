"""Where a model came from: tool versions and fingerprints of the images it saw."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from importlib import metadata

from edgecnn import __version__
from edgecnn.runtime.data import Sample
from edgecnn.runtime.files import sha256_file
from edgecnn.runtime.preprocess import Preprocessing


def tool_versions(*packages: str) -> dict[str, str]:
    """Versions of edgecnn, Python and the named installed packages (missing ones are left out)."""
    versions = {"edgecnn": __version__, "python": sys.version.split()[0]}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def images_fingerprint(samples: Sequence[Sample], spec: Preprocessing) -> str:
    """sha256 over the image bytes (in order) and the preprocessing: same images, same inputs, same hash.

    File names and folders are left out on purpose, so the same images copied elsewhere match.
    """
    digest = hashlib.sha256(spec.fingerprint().encode())
    for sample in samples:
        digest.update(f"{sample.label}:{sha256_file(sample.path)}\n".encode())
    return digest.hexdigest()
