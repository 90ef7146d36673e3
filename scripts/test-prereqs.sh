#!/usr/bin/env bash
# Services and system packages the test suite talks to: PostgreSQL on 127.0.0.1:5432 and, where
# Debian's packages can be installed, bubblewrap for the sandbox tests and chromium for the dashboard
# test. Safe to run repeatedly.
set -u

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$version" ]; then
            echo "starting PostgreSQL $version on 127.0.0.1:5432" >&2
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        fi
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "warning: PostgreSQL is not answering on 127.0.0.1:5432; its tests will be skipped" >&2
fi

if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap for the sandbox tests" >&2
    (apt-get install -y -q bubblewrap >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) \
        || echo "warning: could not install bubblewrap; sandbox tests fall back or skip" >&2
fi
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the dashboard test" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
        || echo "warning: could not install chromium; the dashboard browser test will be skipped" >&2
fi
exit 0
