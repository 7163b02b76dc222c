#!/usr/bin/env bash
# Start the local PostgreSQL and Redis that the production-profile tests talk to, if they are down.
# (docker-compose.yml's PostgreSQL and Redis are the production profile's, not these: its
# superuser is `airflow` with a password and its Redis has no port on the host.)
set -uo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "PostgreSQL or Redis is not reachable on 127.0.0.1" >&2
exit 1
