#!/usr/bin/env bash
# Starts the local services the test suite talks to, if they are not already running:
# PostgreSQL on 127.0.0.1:5432 and NATS with JetStream on 127.0.0.1:4222. The SQLite
# suites need neither; the scaled-out suites do. Idempotent; prints what it did.
set -u

up() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
	for _ in $(seq 1 50); do up "$1" && return 0; sleep 0.2; done
	echo "services: $2 did not come up on 127.0.0.1:$1" >&2
	return 1
}

if ! up 5432; then
	if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
		echo "services: starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
		wait_for 5432 PostgreSQL || true
	else
		echo "services: PostgreSQL is not installed; suites that need it will skip (or fail under CI=true)" >&2
	fi
fi

if ! up 4222; then
	if [ -x /usr/sbin/nats-server ]; then
		echo "services: starting NATS with JetStream"
		mkdir -p /var/lib/nats-server
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
			-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
		wait_for 4222 NATS || true
	else
		echo "services: nats-server is not installed; suites that need it will skip (or fail under CI=true)" >&2
	fi
fi
exit 0
