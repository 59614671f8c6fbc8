# Production image: Airflow 3 with Shadowing's pinned requirements and package.
# The tag's Airflow and Python versions are those of requirements.txt (its apache-airflow pin and the
# --python-version it is compiled for): tests/deploy/test_compose.py checks they agree.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
# The editable install writes its metadata beside the package: the airflow user owns the project folder.
RUN mkdir -p /opt/shadowing && chown airflow:0 /opt/shadowing
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/shadowing/requirements.txt
RUN pip install --no-cache-dir -r /opt/shadowing/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/shadowing/
COPY --chown=airflow:0 include /opt/shadowing/include
RUN pip install --no-cache-dir --no-deps -e /opt/shadowing
