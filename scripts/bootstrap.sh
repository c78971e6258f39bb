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
  echo "bootstrap: creating $VENV with $("$PYTHON" --version) and installing .[train,dev]"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
  "$VENV/bin/pip" install -q -c scripts/constraints.txt -e '.[train,dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
# The MQTT tests and the edge's embedded broker need the Mosquitto binary (Debian puts it in /usr/sbin).
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing mosquitto (MQTT broker for the edge tests)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null; }; then
      echo "bootstrap: note: could not install mosquitto; the MQTT tests will be skipped"
    fi
  else
    echo "bootstrap: note: mosquitto is not installed and this is not root with apt-get; the MQTT tests" \
      "will be skipped (install it: sudo apt-get install mosquitto, or brew install mosquitto)"
  fi
fi
