"""controller/files when the folder or a file cannot be read: the last good objects stay in force.

    tmp dir/*.yaml --(FaultyFs: raises on list/stat/read on demand)--> FolderSource.refresh()

Tests run as root, where `chmod 000` does not stop reads, so permission and fd-exhaustion errors
are injected through the watcher's Filesystem seam; renaming the folder away and replacing it with
a file are done for real.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
from kbroker.controller import compiler, files
from kbroker.controller.folder_fs import LocalFilesystem

BASE = "http://127.0.0.1:8080"
OBJECTS = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
spec:
  broker: default
  subscriber:
    uri: http://127.0.0.1:9000/t
"""


class FaultyFs(LocalFilesystem):
    """The real filesystem, except for the errors a test sets (by operation, or by file name)."""

    def __init__(self) -> None:
        self.list_error: OSError | None = None
        self.stat_errors: dict[str, OSError] = {}
        self.read_errors: dict[str, OSError] = {}

    def list(self, folder: Path) -> list[Path]:
        if self.list_error is not None:
            raise self.list_error
        return super().list(folder)

    def stat(self, path: Path) -> os.stat_result:
        if path.name in self.stat_errors:
            raise self.stat_errors[path.name]
        return super().stat(path)

    def read(self, path: Path) -> str:
        if path.name in self.read_errors:
            raise self.read_errors[path.name]
        return super().read(path)


def emfile() -> OSError:
    return OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def eacces() -> OSError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def names(r: compiler.CompileResult | None) -> tuple[list[str], list[str]]:
    assert r is not None
    return [b.name for b in r.contract.brokers], [t.name for t in r.contract.triggers]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def watched(tmp_path: Path) -> tuple[files.FolderSource, FaultyFs]:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "objects.yaml").write_text(OBJECTS)
    fs = FaultyFs()
    source = files.FolderSource(folder, compiler.Environment(BASE), lambda _: None, fs=fs)
    assert names(source.refresh()) == (["default"], ["t"])
    return source, fs


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (emfile(), "Too many open files (errno 24)"),
        (eacces(), "Permission denied (errno 13)"),
        (FileNotFoundError(errno.ENOENT, "gone"), "config folder does not exist"),
        (NotADirectoryError(errno.ENOTDIR, "file"), "config folder is not a folder"),
    ],
    ids=["EMFILE", "EACCES", "ENOENT", "ENOTDIR"],
)
def test_an_unlistable_folder_keeps_the_last_good_config_and_recovers(
    watched: tuple[files.FolderSource, FaultyFs],
    caplog: pytest.LogCaptureFixture,
    error: OSError,
    reason: str,
) -> None:
    source, fs = watched
    good = source.latest
    caplog.set_level(logging.INFO, logger="kbroker.controller.files")
    fs.list_error = error
    for _ in range(5):  # polls during the episode: no new result, one error line
        assert source.refresh() is None
    assert source.latest is good
    assert not source.health.ok and source.health.since is not None
    (line,) = source.health.errors
    assert line == f"{source.config_dir}: {reason}" or reason in line
    logged = errors_logged(caplog)
    assert len(logged) == 1 and reason in logged[0] and "last good configuration" in logged[0]
    fs.list_error = None
    assert source.refresh() is None  # nothing changed in the folder meanwhile
    assert source.health.ok and source.latest is good
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_changes_made_during_the_episode_apply_on_recovery(
    watched: tuple[files.FolderSource, FaultyFs],
) -> None:
    source, fs = watched
    fs.list_error = emfile()
    (source.config_dir / "objects.yaml").write_text(OBJECTS.split("---")[0])
    assert source.refresh() is None
    fs.list_error = None
    assert names(source.refresh()) == (["default"], [])


def test_the_folder_renamed_away_and_back_for_real(
    watched: tuple[files.FolderSource, FaultyFs], tmp_path: Path
) -> None:
    source, _ = watched
    good = source.latest
    aside = tmp_path / "aside"
    source.config_dir.rename(aside)
    assert source.refresh() is None and source.latest is good
    source.config_dir.write_text("not a folder")  # replaced by a file, then restored
    assert source.refresh() is None and source.latest is good
    assert not source.health.ok
    source.config_dir.unlink()
    aside.rename(source.config_dir)
    assert source.refresh() is None and source.health.ok and source.latest is good


def test_an_emptied_folder_is_a_real_removal(watched: tuple[files.FolderSource, FaultyFs]) -> None:
    source, _ = watched
    (source.config_dir / "objects.yaml").unlink()
    assert names(source.refresh()) == ([], [])
    assert source.health.ok


@pytest.mark.parametrize("operation", ["stat", "read"])
def test_an_unreadable_file_keeps_its_objects_a_removed_one_does_not(
    watched: tuple[files.FolderSource, FaultyFs],
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    source, fs = watched
    caplog.set_level(logging.INFO, logger="kbroker.controller.files")
    path = source.config_dir / "objects.yaml"
    # A change that cannot be read (the stamp moves, the content is out of reach).
    path.write_text(OBJECTS.split("---")[0] + "\n# edited\n")
    getattr(fs, f"{operation}_errors")["objects.yaml"] = eacces()
    r = source.refresh()
    assert names(r) == (["default"], ["t"])  # the last objects of the file stay
    assert r is not None
    assert [p.reason for p in r.problems] == ["cannot read: Permission denied (errno 13)"]
    assert source.health.errors == (f"{path}: cannot read: Permission denied (errno 13)",)
    for _ in range(3):  # failing the same way again is no change
        assert source.refresh() is None
    assert len([m for m in errors_logged(caplog) if "keeping their previous" in m]) == 1
    getattr(fs, f"{operation}_errors").clear()
    assert names(source.refresh()) == (["default"], [])  # read again: now the edit applies
    assert source.health.ok
    path.unlink()  # really gone: its objects go
    assert names(source.refresh()) == ([], [])


def test_first_scan_of_an_unlistable_folder_reports_it(tmp_path: Path) -> None:
    fs = FaultyFs()
    fs.list_error = emfile()
    source = files.FolderSource(tmp_path, compiler.Environment(BASE), lambda _: None, fs=fs)
    r = source.refresh()
    assert r is not None and r.contract.brokers == ()
    assert [p.reason for p in r.problems] == ["cannot read: Too many open files (errno 24)"]
    (tmp_path / "b.yaml").write_text(OBJECTS)
    fs.list_error = None
    assert names(source.refresh()) == (["default"], ["t"])
