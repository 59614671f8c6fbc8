"""Shadowing: keep a shadow of every primary cloud region ready for failover.

The package is Airflow-free except for :mod:`shadowing.orchestration`, the only module that knows Airflow.
"""

import os

# Our numpy work is elementwise passes and reductions, parallelised by our own threads; OpenBLAS's thread pool
# only costs start-up (~60 ms per process, measured with `python -c "import numpy"`) and competes with them.
# An explicit setting from the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

PRIMARY_REGION = "us-east-1"
SHADOW_REGION = "us-west-2"
