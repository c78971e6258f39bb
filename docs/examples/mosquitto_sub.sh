#!/usr/bin/env bash
# The MES account's subscription with the Mosquitto command-line client (package mosquitto-clients):
# every result and alert of the plant, QoS 1, a persistent MQTT 5 session (fixed client id -i, -c = no clean
# start, -x = session expiry: the broker queues results while this is not running), one "topic payload" per line.
# The password comes from the environment, not the command line. docs/mqtt.md explains the topics.
#
#   MQTT_HOST=broker.plant.local MQTT_CAFILE=ca.crt MQTT_PASSWORD=... docs/examples/mosquitto_sub.sh
#   docs/examples/mosquitto_sub.sh -C 10 -W 30     # extra options go to mosquitto_sub: stop after 10 or 30 s
#
# mosquitto_sub does not drop repeats or check seq: use mes_subscriber.py (beside this file) for that.
set -euo pipefail
: "${MQTT_PASSWORD:?set MQTT_PASSWORD to the password of the mes account}"
exec mosquitto_sub -h "${MQTT_HOST:-localhost}" -p "${MQTT_PORT:-8883}" --cafile "${MQTT_CAFILE:-ca.crt}" \
  -u "${MQTT_USERNAME:-mes}" -P "$MQTT_PASSWORD" -V mqttv5 -i "${MQTT_CLIENT_ID:-mes-cli}" -c -x 3600 -q 1 -v \
  -t 'pumpinspect/+/+/result' -t 'pumpinspect/+/+/alert' "$@"
