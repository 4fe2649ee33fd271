"""Parsl configuration: run sweep cells as Slurm jobs (one cell per node worker).

Use with ``ptycho-study sweep --executor parsl --parsl-config configs/parsl_slurm.py``.
Adapt ``partition``, ``account``, ``walltime`` and ``worker_init`` (which must activate an
environment where ``compare-models`` is installed, e.g. this project's ``.venv``) to your
site. For PBS, use ``parsl.providers.PBSProProvider`` with the same pattern.
"""

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SrunLauncher
from parsl.providers import SlurmProvider

config = Config(
    executors=[
        HighThroughputExecutor(
            label="slurm",
            max_workers_per_node=1,  # a cell uses the whole node (TensorFlow, pty-chi)
            provider=SlurmProvider(
                partition="gpu",
                account="my_account",
                nodes_per_block=1,
                init_blocks=0,
                max_blocks=8,
                walltime="04:00:00",
                launcher=SrunLauncher(),
                worker_init="source /path/to/compare-models/.venv/bin/activate",
            ),
        )
    ],
)
