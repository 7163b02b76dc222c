-- Databases and roles of the production profile, besides Airflow's own metadata database
-- (created by the postgres image from POSTGRES_DB). Run by init.sh, which sets the psql
-- variables below from the container's environment (.env); safe to run again.
--
--   forecast_user / forecast_password  the pipeline's login: owns the predictions and the Feast
--                                      registry databases, creates and fills the tables
--   analyst_role / analyst_password    read-only: SELECT on what forecast_user creates in the
--                                      predictions database (the forecasts table, its _runs
--                                      table, its _latest view, the model registry _models,
--                                      the realised accuracy _accuracy, _errors and the
--                                      _tracking_signal view, the value added _fva, the drift _drift, the alerts
--                                      _alerts, the what-if _scenarios and their _scenario_totals
--                                      (the Scenarios page's sums), the forecasts' drivers
--                                      _drivers, the _revisions and _churn views, the hierarchy's
--                                      _levels, the _levels_latest view and their realised
--                                      _level_errors, the planners'
--                                      _overrides and their _override_outcomes; docs/tables.md
--                                      lists them all); LOGIN only with a password. A planner
--                                      role (INSERT on _overrides) is made after the first
--                                      publish: python -m forecasting.publishing.overrides grant-planner
--   predictions_db, registry_db        database names
--   private_dbs                        comma-separated: the server's other databases (Airflow's
--                                      metadata DB, postgres, template1); only their owners and
--                                      superusers may connect to them (CONNECT revoked from PUBLIC)
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'forecast_user', :'forecast_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'forecast_user') \gexec

SELECT format('CREATE ROLE %I NOLOGIN', :'analyst_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'analyst_role') \gexec

SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'analyst_role', :'analyst_password')
WHERE :'analyst_password' <> '' \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'predictions_db', :'forecast_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'predictions_db') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'registry_db', :'forecast_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'registry_db') \gexec

-- Only the roles meant to may connect.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'predictions_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'registry_db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'predictions_db', :'analyst_role') \gexec
-- PostgreSQL lets every role (PUBLIC) connect to every database it creates: the analyst (and the
-- forecast user) could connect to Airflow's metadata DB and to postgres. Their owners keep CONNECT.
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', datname) FROM pg_database
WHERE datname IN (SELECT btrim(name) FROM unnest(string_to_array(:'private_dbs', ',')) AS name)
  AND datname NOT IN (:'predictions_db', :'registry_db') \gexec

\connect :"predictions_db"
-- The pipeline creates its tables in public; nobody else may create anything there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO :"forecast_user";
GRANT USAGE ON SCHEMA public TO :"analyst_role";
-- Tables and views the pipeline creates later (on its first publish) are readable by analysts.
ALTER DEFAULT PRIVILEGES FOR ROLE :"forecast_user" IN SCHEMA public GRANT SELECT ON TABLES TO :"analyst_role";
-- ...and those that exist already (running this again after a publish)...
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"analyst_role";
-- ...but for publish's lock tables (<table>_publish_lock), which are the pipeline's alone.
SELECT format('REVOKE ALL ON %I.%I FROM %I', schemaname, tablename, :'analyst_role') FROM pg_tables
WHERE schemaname = 'public' AND tablename LIKE '%\_publish\_lock' \gexec
-- PUBLIC may run the large-object functions (lo_create, lo_from_bytea, lowrite, ...) and
-- pg_logical_emit_message: an analyst could store data that lasts (large objects stay until
-- unlinked) or fill the WAL. Nothing of the pipeline uses them; the query that finds them is
-- forecasting.publishing.postgres.WRITING_FUNCTIONS (tests/publishing/test_analyst_writes.py checks both).
SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', p.oid::regprocedure) FROM pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
  AND (left(p.proname, 3) = 'lo_' OR p.proname IN ('loread', 'lowrite', 'pg_logical_emit_message')) \gexec
