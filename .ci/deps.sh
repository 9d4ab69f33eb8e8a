#!/usr/bin/env bash
# Installs what the tests need and the machine may lack. Idempotent; run by .ci/run and
# usable by hand. Go modules come from go.mod; system packages from Debian.
set -euo pipefail

need_apt=()
if ! command -v pg_isready >/dev/null 2>&1; then need_apt+=(postgresql-client); fi
# The widget's browser tests drive Debian's chromium (chromedp, ExecPath /usr/bin/chromium);
# under CI=true they fail when it is missing.
if [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Fail early and clearly when the services CI relies on are not there.
if command -v pg_isready >/dev/null 2>&1; then
  pg_isready -h 127.0.0.1 -p 5432 -t 10 || { echo "PostgreSQL is not answering on 127.0.0.1:5432"; exit 1; }
fi
