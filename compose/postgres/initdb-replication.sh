#!/usr/bin/env bash
# The official postgres image runs this once, on the first start of an empty
# data directory (/docker-entrypoint-initdb.d), against its temporary server:
# what faultline-local/postgres:15 has built in (compose/images/postgres/
# Dockerfile), for the primary of the internet variant of the demo.
#  - replication connections are trusted from anywhere (the read replica
#    clones the primary with pg_basebackup and streams from it);
#  - pg_stat_statements is created in template1 and postgres, so every
#    database has the view, on the standby too (it cannot create it there).
# The settings (shared_preload_libraries, ...) are command-line options in
# docker-compose.yml.
set -euo pipefail

printf '%s\n' "host replication all all trust" >>"$PGDATA/pg_hba.conf"
for db in template1 postgres; do
  psql -v ON_ERROR_STOP=1 --username postgres --dbname "$db" \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
done
