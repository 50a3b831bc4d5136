#!/bin/sh
# Makes the loopback-only TLS fixtures used by the https tests: a throwaway CA and a server certificate for
# 127.0.0.1 and localhost signed by it. Nothing here protects anything; the keys are public on purpose.
set -eu
out="${1:-$(dirname "$0")/../fixtures/tls}"
mkdir -p "$out"
cd "$out"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.pem \
  -days 36500 -subj "/CN=infer-doctor test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout server.key -out server.csr \
  -subj "/CN=127.0.0.1"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 36500 \
  -extfile server.ext
rm -f server.csr server.ext ca.srl ca.key
