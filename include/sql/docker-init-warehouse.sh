#!/bin/bash
# Creates the Shadowing warehouse database beside Airflow's metadata database (docker-compose only).
# The password goes in as a psql variable (:'warehouse_password' quotes it), so any character is safe.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -v warehouse_password="${WAREHOUSE_PASSWORD}" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-'SQL'
	CREATE USER shadowing WITH PASSWORD :'warehouse_password';
	CREATE DATABASE shadowing OWNER shadowing;
SQL
