#!/usr/bin/env bash
# System packages the harness needs beyond Python: Node.js/npm (the Allure 3 report generator) and
# kubectl (conformance tests drive the twin with it). Installs them where we may (root on
# Debian/Ubuntu); otherwise names the exact command and carries on, so what needs them can say so.
set -u
missing=()
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "bootstrap: the HTML report needs Node.js and npm; run: sudo apt-get install -y nodejs npm" >&2
  fi
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "bootstrap: kubectl not found; the kubectl conformance tests will be skipped. Install kubectl v1.32" \
       "(e.g. sudo apt-get install -y kubectl from the Kubernetes apt repository) to run them." >&2
fi
exit 0
