-- Airflow's metadata database, beside the pipeline's (same server in compose).
CREATE DATABASE airflow OWNER aegis;
