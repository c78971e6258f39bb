#!/usr/bin/env bash
# A development CA with a broker certificate and optional client certificates (mutual TLS).
# NOT for production: keys are unencrypted and live next to the CA key.
#
#   deploy/mosquitto/make-dev-ca.sh OUT_DIR BROKER_HOST [CLIENT_NAME ...]
#
# OUT_DIR gets ca.crt/ca.key, broker.crt/broker.key (valid for BROKER_HOST, localhost and 127.0.0.1)
# and NAME.crt/NAME.key per client (CN = NAME: use the station id, see deploy/mosquitto/acl).
# Re-running keeps an existing CA and re-issues the other certificates.
# Station config: [mqtt.tls] ca_file = "OUT_DIR/ca.crt" (+ cert_file/key_file for mutual TLS).
set -euo pipefail
out=${1:?usage: make-dev-ca.sh OUT_DIR BROKER_HOST [CLIENT_NAME ...]}
host=${2:?usage: make-dev-ca.sh OUT_DIR BROKER_HOST [CLIENT_NAME ...]}
shift 2
days=825
mkdir -p "$out"
cd "$out"
umask 077

if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
    -subj "/CN=pumpinspect development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# issue NAME EXTENDED_KEY_USAGE [SUBJECT_ALT_NAME]
issue() {
  local name=$1 usage=$2 san=${3:-} ext
  ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
  [ -n "$san" ] && ext="$ext
subjectAltName=$san"
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -sha256 -days "$days" -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$name.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$name.csr"
}

if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then host_san="IP:$host"; else host_san="DNS:$host"; fi
issue broker serverAuth "$host_san,DNS:localhost,IP:127.0.0.1"
for client in "$@"; do
  issue "$client" clientAuth
done
chmod 644 ./*.crt
echo "$PWD: ca.crt, broker.crt/key for $host${*:+, clients: $*}"
