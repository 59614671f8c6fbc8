"""The only Airflow-aware layer: Assets, default args, Params and connections → clients.

DAG files import from here and from the Airflow-free core; the core never imports Airflow.
"""
