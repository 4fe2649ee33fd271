"""A one-node Slurm on this machine, for the tests of the sweep's Slurm executor.

:func:`start_local_slurm` writes a ``slurm.conf`` for this host (node ``localhost``, 2 CPUs,
the machine's memory, ``select/cons_tres``, ``proctrack/linuxproc``, no cgroups), a fresh
munge key, and starts ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as child
processes, on free ports, with every file under one directory; it returns when ``sinfo`` shows
the node idle. :func:`stop_local_slurm` cancels the jobs left and stops the three daemons it
started. Where Slurm cannot run here (not root, ``slurm-wlm`` or ``munge`` not installed, a
daemon that does not come up) :class:`SlurmUnavailable` says why, for the tests to skip with.

Debian: ``apt-get install slurm-wlm munge`` (``.ci/run`` does it). Only the test fixture reads
``sinfo``; the project's own code never does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalSlurm", "SlurmUnavailable", "start_local_slurm", "stop_local_slurm", "PARTITION", "NODE"]

PARTITION = "debug"
NODE = "localhost"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scancel", "scontrol", "sinfo", "squeue")
START_TIMEOUT_S = 60


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be started here; the message says why."""


@dataclass
class LocalSlurm:
    root: Path
    conf: Path
    partition: str = PARTITION
    node: str = NODE
    processes: list = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What Slurm's client commands need to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(Path(d) / name) for d in ("/usr/sbin", "/sbin", "/usr/bin") if (Path(d) / name).is_file()), None
    )


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1024


def _slurm_conf(root: Path, ports: list[int]) -> str:
    return f"""\
ClusterName=comparemodelstest
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
AuthInfo=socket={root / 'munge' / 'munge.socket'}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=2
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={NODE} NodeAddr=127.0.0.1 CPUs=2 RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _log_tail(root: Path) -> str:
    lines = []
    for path in sorted((root / "log").glob("*")):
        tail = path.read_text(errors="replace").strip().splitlines()[-3:]
        lines += [f"{path.name}: {line}" for line in tail]
    return " | ".join(lines) or "no daemon logs"


def _node_state(slurm: LocalSlurm) -> str:
    completed = subprocess.run(["sinfo", "-h", "-n", slurm.node, "-o", "%t"], capture_output=True, text=True,
                               env={**os.environ, **slurm.env}, timeout=30, check=False)
    return completed.stdout.strip()


def start_local_slurm(root: Path) -> LocalSlurm:
    """Start munged, slurmctld and slurmd with everything under ``root``; wait for an idle node.

    Raises
    ------
    SlurmUnavailable
        Not root, the packages missing, or a daemon that does not come up (its log's tail).
    """
    if os.geteuid() != 0:
        raise SlurmUnavailable("a local Slurm needs root (slurmd runs the jobs); run the tests as root, as CI does")
    binaries = {name: _find(name) for name in (*DAEMONS, *CLIENTS)}
    missing = sorted(name for name, path in binaries.items() if path is None)
    if missing:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed: apt-get install slurm-wlm munge (.ci/run does it)")
    for name in ("munge", "munge_key", "state", "spool", "log"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "munge_key").chmod(0o700)
    key = root / "munge_key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    (root / "munge").chmod(0o755)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, _free_ports(2)))
    slurm = LocalSlurm(root, conf)
    env = {**os.environ, **slurm.env}
    commands = [
        # --force: the socket may sit in a private (0700) temporary directory; only root uses it.
        [binaries["munged"], "--foreground", "--force", f"--key-file={key}", f"--socket={root / 'munge' / 'munge.socket'}",
         f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'log' / 'munged.log'}",
         f"--seed-file={root / 'munge' / 'munged.seed'}"],
        [binaries["slurmctld"], "-D", "-i", "-f", str(conf)],
        [binaries["slurmd"], "-D", "-N", NODE, "-f", str(conf)],
    ]
    try:
        for command in commands:
            with (root / "log" / f"{Path(command[0]).name}.out").open("w") as out:
                slurm.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
            time.sleep(0.5)
            if slurm.processes[-1].poll() is not None:
                raise SlurmUnavailable(f"{Path(command[0]).name} exited with status {slurm.processes[-1].returncode}: {_log_tail(root)}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while (state := _node_state(slurm)) != "idle":
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"node {NODE} not idle after {START_TIMEOUT_S} s (state {state!r}): {_log_tail(root)}")
            time.sleep(0.5)
    except BaseException:
        stop_local_slurm(slurm)
        raise
    return slurm


def stop_local_slurm(slurm: LocalSlurm) -> None:
    """Cancel the jobs left in the partition, then stop the daemons this module started."""
    if slurm.processes and all(p.poll() is None for p in slurm.processes):
        subprocess.run(["scancel", "--partition", slurm.partition], env={**os.environ, **slurm.env},
                       capture_output=True, timeout=30, check=False)
        time.sleep(1)
    for process in reversed(slurm.processes):  # slurmd, slurmctld, then munged
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    slurm.processes.clear()
