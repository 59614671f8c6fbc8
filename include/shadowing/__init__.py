"""Shadowing: keep a shadow of every primary cloud region ready for failover.

The package is Airflow-free except for :mod:`shadowing.orchestration`, the only module that knows Airflow.
"""

__version__ = "0.1.0"

PRIMARY_REGION = "us-east-1"
SHADOW_REGION = "us-west-2"
