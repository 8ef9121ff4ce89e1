#!/bin/sh
# Entry point of deploy/postgres.Dockerfile. At the first start (an empty $PGDATA volume) it makes the
# cluster: superuser $POSTGRES_USER with the password read from $POSTGRES_PASSWORD_FILE (never from the
# environment or the command line), database $POSTGRES_DB, password (SCRAM) logins from any address,
# trust only on the container's own unix socket. Then, and at every later start, it runs postgres.
set -eu
: "${PGDATA:?}" "${POSTGRES_USER:=convd}" "${POSTGRES_DB:=convd}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=${POSTGRES_PASSWORD_FILE:-}
  if [ -z "$pwfile" ] || [ ! -r "$pwfile" ] || [ ! -s "$pwfile" ]; then
    echo "convd-postgres: POSTGRES_PASSWORD_FILE ('$pwfile') must name a readable, non-empty file" >&2
    exit 1
  fi
  echo "convd-postgres: new cluster in $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
         --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\nmax_connections = 200\n" >> "$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # a server on the unix socket only, for the CREATE DATABASE
    pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses=''" start >/dev/null
    psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres \
         -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\""
    pg_ctl -D "$PGDATA" -w -t 60 -m fast stop >/dev/null
  fi
fi
exec postgres -D "$PGDATA" "$@"
