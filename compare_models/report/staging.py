"""An output directory that is either complete or clearly marked failed.

Results are written into a hidden staging directory beside the target and renamed into place
only when the run succeeds. On failure the target holds ``logs/`` and a ``FAILED`` file with the
reason, and nothing else. A run killed outright leaves only the hidden staging directory, which
no reader takes for a result.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from ..errors import CompareModelsError

__all__ = ["OutputExistsError", "StagedOutput", "RESULT_LOGGER"]

RESULT_LOGGER = "compare_models"


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
        token = uuid.uuid4().hex[:8]
        self.staging = self.target.parent / f".{self.target.name}.partial-{token}"
        (self.staging / "logs").mkdir(parents=True)
        handler = logging.FileHandler(self.staging / "logs" / "run.log")
        handler.setLevel(self.log_level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger(RESULT_LOGGER)
        if logger.level == logging.NOTSET or logger.level > self.log_level:
            logger.setLevel(self.log_level)
        logger.addHandler(handler)
        self._handler = handler
        return self

    def _detach_log(self):
        if self._handler is not None:
            logging.getLogger(RESULT_LOGGER).removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def _replace_target_with(self, source: Path):
        if self.target.exists():
            trash = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(source, self.target)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            logging.getLogger(RESULT_LOGGER).info("run complete: %s", self.target)
            self._detach_log()
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
