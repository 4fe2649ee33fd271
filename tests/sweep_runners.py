"""A step runner for the sweep's tests: the stand-in steps, held up or failed where the test says.

The sweep names it ``step_runner: sweep_runners:scripted_stand_in`` (this directory on the
workers' ``PYTHONPATH``). A test writes ``test_script.json`` into the sweep's output directory:
``{"hold": [{"cell": ..., "step": ..., "seconds": ...}], "fail": [{"cell": ..., "step": ...,
"message": ...}], "fail_arm": [{"cell": ..., "arm": ..., "reason": ...}]}``; a step it names
sleeps first (to be killed, cancelled or timed out mid-step) or fails with the message in its
log; a cell named in ``fail_arm`` finishes its compare step without that arm, recorded in
``compare/metrics.json`` as compare-models records a failed arm. The file lives beside the cells, so it reaches
a worker on any node, and removing it lets the same runner (the same step hashes) finish the
cells on resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from compare_models.pipelines.sweep_stand_in import run_stand_in_step

SCRIPT_FILE = "test_script.json"
RUNNER = "sweep_runners:scripted_stand_in"


def write_script(output_dir: Path, *, hold=(), fail=(), fail_arm=()) -> None:
    """Write the instructions for :func:`scripted_stand_in` into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SCRIPT_FILE).write_text(json.dumps({"hold": list(hold), "fail": list(fail), "fail_arm": list(fail_arm)}))


def _matching(rules, cell: str, step: str):
    return [rule for rule in rules if rule["cell"] == cell and rule["step"] == step]


def scripted_stand_in(request) -> int:
    cell_dir = Path(request.cell_dir)
    script_path = cell_dir.parent.parent / SCRIPT_FILE
    script = json.loads(script_path.read_text()) if script_path.exists() else {}
    for rule in _matching(script.get("hold", ()), cell_dir.name, request.step):
        Path(request.log_path).write_text(f"held for {rule['seconds']} s\n")
        time.sleep(float(rule["seconds"]))
    for rule in _matching(script.get("fail", ()), cell_dir.name, request.step):
        Path(request.log_path).write_text(f"{rule['message']}\n")
        return 3
    status = run_stand_in_step(request)
    failed = [rule for rule in script.get("fail_arm", ()) if rule["cell"] == cell_dir.name]
    if request.step == "compare" and failed:
        arms = {rule["arm"]: [{"stage": "making the image", "step": None, "reason": rule["reason"], "fix": "-"}]
                for rule in failed}
        (cell_dir / "compare" / "metrics.json").write_text(json.dumps({"failures": {"arms": arms, "exit_status": 3}}))
    return status
