"""The failover orchestrator: launch the blueprint in the shadow region in dependency order, wire the network,
move traffic, trigger replication, verify, and log a failover event — idempotently and fault tolerantly.

Airflow-free: :mod:`shadowing.orchestration.failover` and the DAGs ``regional_failover`` /
``regional_failback`` call the step functions of :mod:`shadowing.failover.steps`; the CLI and the benchmark call
the same functions directly (:mod:`shadowing.failover.runner`).
"""
