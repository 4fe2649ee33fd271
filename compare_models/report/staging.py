"""An output directory that is either complete or clearly marked failed.

Results are written into a hidden staging directory beside the target and renamed into place
only when the run succeeds. On failure the target holds ``logs/`` and a ``FAILED`` file with the
reason, and nothing else. A run killed outright (SIGKILL, a power cut) leaves only the hidden
staging directory, which no reader takes for a result, and the next run for the same target
removes it.

Leftovers
---------
A staging directory is named ``.NAME.partial-PID-TOKEN`` (and a replaced result, for the moment
before it is deleted, ``.NAME.old-PID-TOKEN``), where PID is the owning process; the file
``OWNER`` inside records the pid, the host and the process's start time. On entry,
:class:`StagedOutput` removes every such directory of the same target whose owner is dead: on
this host, with no process of that pid, or a process of that pid that started at another time
(the pid was reused), or a zombie. A directory whose owner is alive, runs on another host (a
shared file system), or cannot be identified (a name without a pid) is never removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

from ..errors import CompareModelsError

__all__ = ["OutputExistsError", "StagedOutput", "RESULT_LOGGER", "remove_stale_staging", "owner_alive"]

RESULT_LOGGER = "compare_models"
OWNER_FILE = "OWNER"
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)")

log = logging.getLogger("compare_models.staging")


def _process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def _owner_record() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start_ticks": _process_start_ticks(pid)}


def owner_alive(directory) -> bool:
    """Whether the process that made a staging ``directory`` may still be running.

    True unless the owner is known to be dead (see the module docstring): a directory that
    cannot be attributed, or whose owner runs on another host, counts as alive.
    """
    directory = Path(directory)
    match = _LEFTOVER.fullmatch(directory.name)
    if match is None:
        return True
    record = {}
    try:
        record = json.loads((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        pass  # killed before OWNER was written: the pid in the name still identifies it
    if not isinstance(record, dict):
        record = {}
    if record.get("host") not in (None, socket.gethostname()):
        return True
    pid = int(match["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    if _process_state(pid) == "Z":
        return False
    started = record.get("start_ticks")
    if started is not None and _process_start_ticks(pid) not in (None, started):
        return False  # the pid now belongs to a later process
    return True


def remove_stale_staging(target) -> list[Path]:
    """Remove the leftovers of dead runs beside ``target`` (``.NAME.partial-*``, ``.NAME.old-*``);
    return the directories removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for candidate in sorted(target.parent.glob(f".{target.name}.*-*")):
        match = _LEFTOVER.fullmatch(candidate.name)
        if match is None or match["name"] != target.name or not candidate.is_dir():
            continue
        if owner_alive(candidate):
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        if not candidate.exists():
            removed.append(candidate)
    return removed


class OutputExistsError(CompareModelsError):
    """The output directory exists and --overwrite was not given."""


class StagedOutput:
    """Context manager staging a run's files; see the module docstring.

    Parameters
    ----------
    target : path
        The output directory the user asked for.
    overwrite : bool
        Replace an existing ``target``; otherwise an existing one is an error before any work.
    log_level : int
        Level of the ``logs/run.log`` handler attached to the ``compare_models`` logger for
        the duration of the run (removed on exit).
    """

    def __init__(self, target, *, overwrite: bool = False, log_level: int = logging.INFO):
        self.target = Path(target)
        self.overwrite = overwrite
        self.log_level = log_level
        self.staging: Path | None = None
        self._handler: logging.Handler | None = None

    @property
    def path(self) -> Path:
        """Where to write results while the run is going on."""
        if self.staging is None:
            raise RuntimeError("StagedOutput used outside its context")
        return self.staging

    def __enter__(self) -> StagedOutput:
        if self.target.exists() and not self.overwrite:
            raise OutputExistsError(
                f"{self.target}: output directory exists; pass --overwrite to replace it"
            )
        if self.target.exists() and not self.target.is_dir():
            raise OutputExistsError(f"{self.target}: exists and is not a directory")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_staging(self.target)
        self.staging = self.target.parent / f".{self.target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (self.staging / "logs").mkdir(parents=True)
        (self.staging / OWNER_FILE).write_text(json.dumps(_owner_record()))
        handler = logging.FileHandler(self.staging / "logs" / "run.log")
        handler.setLevel(self.log_level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger(RESULT_LOGGER)
        if logger.level == logging.NOTSET or logger.level > self.log_level:
            logger.setLevel(self.log_level)
        logger.addHandler(handler)
        self._handler = handler
        for path in stale:
            log.info("removed %s, left by a run that no longer runs", path.name)
        return self

    def _detach_log(self):
        if self._handler is not None:
            logging.getLogger(RESULT_LOGGER).removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def _replace_target_with(self, source: Path):
        if self.target.exists():
            trash = self.target.parent / f".{self.target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(source, self.target)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            logging.getLogger(RESULT_LOGGER).info("run complete: %s", self.target)
            self._detach_log()
            (self.staging / OWNER_FILE).unlink(missing_ok=True)
            self._replace_target_with(self.staging)
            return False
        reason = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
        # The traceback goes to the run log only; the console gets the CLI's one line.
        self._handler.handle(
            logging.LogRecord(RESULT_LOGGER, logging.ERROR, __file__, 0, "run failed: %s", (reason,), (exc_type, exc, tb))
        )
        self._detach_log()
        for child in self.staging.iterdir():
            if child.name != "logs":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        (self.staging / "FAILED").write_text(
            f"{reason}\nfailed at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; see logs/run.log\n"
        )
        self._replace_target_with(self.staging)
        return False
