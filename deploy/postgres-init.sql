-- Runs once, when the postgres service starts on an empty data volume (docker-entrypoint-initdb.d),
-- as $POSTGRES_USER, after the database $POSTGRES_DB (Prefect's) was created.
-- promoflow keeps its records (promotions, approvals, audit trail) in a database of its own.
CREATE DATABASE promoflow;
