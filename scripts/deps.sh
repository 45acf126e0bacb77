#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, from Debian's packages, when it
# is missing: Prometheus for the end-to-end test, Chromium for the dashboard test,
# kubernetes-validate (PyPI) for the manifests, and with it jsonschema for the decide schema.
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages) for the tests" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing needs root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing kubernetes-validate (PyPI) to check the manifests offline" >&2
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
# jsonschema comes with kubernetes-validate; the decide schema's test uses it too.
if ! python3 -c "import jsonschema" >/dev/null 2>&1; then
  echo "installing jsonschema (PyPI) to check docs/decide.schema.json" >&2
  python3 -m pip install --quiet --disable-pip-version-check jsonschema
fi
prometheus --version 2>&1 | head -1 >&2
