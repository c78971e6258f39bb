#!/usr/bin/env bash
# Creates the virtual environment and installs the project with every extra it tests.
# Idempotent: re-installs only when pyproject.toml or the constraints change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# torch/torchvision wheels lie on this machine's disk for Python 3.11 (see README, Install).
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp="$VENV/.installed-$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV with $("$PYTHON" --version) and installing .[train,dev,postgres]"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
  "$VENV/bin/pip" install -q -c scripts/constraints.txt -e '.[train,dev,postgres]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
# apt_install PACKAGE WHAT SKIPPED: installs a Debian package as root (apt-get update once), else says what is skipped.
apt_updated=
apt_install() {
  local package=$1 what=$2 skipped=$3
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing $package ($what)"
    if ! { { [ -n "$apt_updated" ] || DEBIAN_FRONTEND=noninteractive apt-get update -qq; } && apt_updated=1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null; }; then
      echo "bootstrap: note: could not install $package; $skipped"
    fi
  else
    echo "bootstrap: note: $package is not installed and this is not root with apt-get; $skipped" \
      "(install it: sudo apt-get install $package, or brew install $package)"
  fi
}
# The MQTT tests and the edge's embedded broker need the Mosquitto binary (Debian puts it in /usr/sbin).
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  apt_install mosquitto "MQTT broker for the edge tests" "the MQTT tests will be skipped"
fi
# docs/examples/mosquitto_sub.sh is tested with the real client.
if ! command -v mosquitto_sub >/dev/null; then
  apt_install mosquitto-clients "MQTT command-line clients" "the mosquitto_sub example test will be skipped"
fi
# The store's PostgreSQL tests start a throwaway server of their own (tests/postgres_server.py: initdb + pg_ctl on
# a free loopback port, as an unprivileged user); they need only the server binaries, which Debian keeps in
# /usr/lib/postgresql/<major>/bin. No default cluster: nothing else should listen on 5432 for the tests.
if ! command -v pg_ctl >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
  no_main=/etc/postgresql-common/createcluster.d/pumpinspect.conf
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ ! -e "$no_main" ]; then
    mkdir -p "$(dirname "$no_main")" && echo "create_main_cluster = false" >"$no_main"
  fi
  apt_install postgresql "server for the store's PostgreSQL tests" "the store's PostgreSQL tests will be skipped"
fi
