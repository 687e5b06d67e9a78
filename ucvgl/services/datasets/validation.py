"""Collecting dataset problems while reading, and turning them into an error or a skip.

Every reader follows the same contract: it records each problem it finds (a missing file,
a malformed line, a duplicate id, an unreadable image) as a
:class:`~ucvgl.services.datasets.index.ValidationIssue` in an :class:`IssueCollector`, drops
the entry the problem belongs to, and at the end calls :meth:`IssueCollector.finish`. That
raises a :class:`~ucvgl.shared.errors.DatasetError` naming the first problems, unless the
caller passed ``skip_invalid=True``, in which case the bad entries stay dropped and their
number is recorded in ``report.skipped``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from pathlib import Path

from ucvgl.services.datasets.index import ValidationIssue, ValidationReport
from ucvgl.services.progress import NullProgress, Progress, ScaledProgress
from ucvgl.shared.errors import DatasetError

logger = logging.getLogger(__name__)

SKIP_HINT = "pass skip_invalid=True (CLI: --skip-invalid) to skip them"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
READ_SHARE = 0.25
"""The part of a reader's 0..1 given to reading its lists when images are validated too."""
DONE_BEFORE_END = 0.95
"""Where reading (and validation) end; the reader's own final update reports 1.0."""


def reader_progress(progress: Progress, validate_images: bool) -> tuple[Progress, Progress]:
    """Sub-progress of a reader's steps, so that its overall fraction never steps back.

    A reader reports its list reading to the first and image validation to the second
    (each 0..1 of its own step, with its own stage name) and ``1.0`` to ``progress`` when
    done. Reading gets ``[0, 0.95]`` alone, or ``[0, 0.25]`` followed by validation on
    ``[0.25, 0.95]``.

    Args:
        progress: the reader's progress (a job's, the CLI's).
        validate_images: whether the reader validates image headers after reading.

    Returns:
        (reading progress, validation progress).
    """
    read_end = READ_SHARE if validate_images else DONE_BEFORE_END
    return (
        ScaledProgress(progress, 0.0, read_end),
        ScaledProgress(progress, read_end, DONE_BEFORE_END),
    )


class IssueCollector:
    """Accumulates the problems of one dataset and the entries dropped because of them.

    Args:
        root: the dataset folder; issue paths are written relative to it when possible.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.issues: list[ValidationIssue] = []
        self._dropped: set[Hashable] = set()

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the dataset root when it lies below it, else as given."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def add(self, path: Path | str, line: int | None, reason: str) -> None:
        """Record one problem at ``path`` (and 1-based ``line``, when it is in a text file)."""
        self.issues.append(ValidationIssue(self.rel(path), line, reason))

    def drop(self, key: Hashable) -> None:
        """Mark the entry ``key`` as dropped (counted once however many problems it has)."""
        self._dropped.add(key)

    def is_dropped(self, key: Hashable) -> bool:
        """Whether ``key`` was dropped already."""
        return key in self._dropped

    @property
    def skipped(self) -> int:
        """How many entries were dropped."""
        return len(self._dropped)

    def report(self) -> ValidationReport:
        """The validation report so far."""
        return ValidationReport(issues=list(self.issues), skipped=self.skipped)

    def finish(self, skip_invalid: bool, what: str) -> ValidationReport:
        """Raise on problems unless ``skip_invalid``; otherwise log the skips and report.

        Args:
            skip_invalid: drop bad entries instead of failing.
            what: a short name of the dataset for the messages ("CVUSA dataset at /data").

        Raises:
            DatasetError: when there are problems and ``skip_invalid`` is False.
        """
        report = self.report()
        if report.ok:
            return report
        if not skip_invalid:
            limit = 5
            head = "\n".join(f"  - {issue}" for issue in report.issues[:limit])
            more = len(report.issues) - limit
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise DatasetError(
                f"{what}: {len(report.issues)} problem(s) affecting {report.skipped} "
                f"entr(y/ies):\n{head}{tail}\n{SKIP_HINT}"
            )
        logger.warning(
            "%s: skipped %d invalid entr(y/ies) because of %d problem(s); first: %s",
            what,
            report.skipped,
            len(report.issues),
            report.issues[0],
        )
        return report


class FileChecker:
    """Cheap existence checks that list each folder once instead of stat-ing every file.

    On network file systems a listing per folder is far cheaper than one ``stat`` per
    image when a dataset has 100k files in a few folders.
    """

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        """Whether ``path`` is an existing regular file (or a link to one)."""
        parent, name = os.path.split(os.fspath(path))
        names = self._listings.get(parent)
        if names is None:
            try:
                with os.scandir(parent or ".") as it:
                    names = frozenset(e.name for e in it if e.is_file())
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                names = frozenset()
            self._listings[parent] = names
        return name in names


def resolve_inside(root: Path, relative: str) -> Path | None:
    """``root / relative``, or None when ``relative`` is absolute or escapes ``root``.

    Split files come from the user; a line like ``../../etc/passwd`` must not make the
    service read files outside the dataset folder.
    """
    rel = relative.strip().replace("\\", "/")
    if not rel or rel.startswith("/") or rel[1:2] == ":" or ".." in rel.split("/"):
        return None
    return root / rel


def list_images(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursively), sorted; hidden files are ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath) / name)
    return sorted(found)


def validate_image_headers(
    paths: list[tuple[Hashable, Path]],
    issues: IssueCollector,
    *,
    progress: Progress | None = None,
    stage: str = "validate images",
) -> None:
    """Open each image's header with Pillow; record and drop the unreadable ones.

    Args:
        paths: (entry key, image path) pairs; the key is dropped when the image is bad.
        issues: where problems are recorded.
        progress: reports the fraction checked and is polled for cancellation.
        stage: the progress stage name.
    """
    from ucvgl.services.datasets.images import check_image_header

    progress = progress or NullProgress()
    n = len(paths)
    for k, (key, path) in enumerate(paths):
        if k % 256 == 0:
            progress.check_cancelled()
            progress.update(stage, k / max(n, 1))
        reason = check_image_header(path)
        if reason is not None:
            issues.add(path, None, reason)
            issues.drop(key)
    progress.update(stage, 1.0)
