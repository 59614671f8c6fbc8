#!/bin/bash
# Creates the Shadowing warehouse database beside Airflow's metadata database (docker-compose only).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE USER shadowing WITH PASSWORD '${WAREHOUSE_PASSWORD}';
  CREATE DATABASE shadowing OWNER shadowing;
SQL
