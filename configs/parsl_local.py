"""Parsl configuration: run sweep cells on this workstation, one worker per cell.

Use with ``ptycho-study sweep --executor parsl --parsl-config configs/parsl_local.py``. Parsl
reads ``config`` from this file. Each cell starts its own processes for every step, so a
worker only orchestrates; size ``max_workers_per_node`` to the cells that fit in memory.
"""

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

config = Config(
    executors=[
        HighThroughputExecutor(
            label="workstation",
            max_workers_per_node=2,
            provider=LocalProvider(init_blocks=1, max_blocks=1),
        )
    ],
)
