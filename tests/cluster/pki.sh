#!/usr/bin/env bash
# Per-cluster PKI with openssl: a CA, the API server's serving certificate, client
# certificates for each component and the admin, the kubelet's serving certificate and
# the service account signing key pair. Usage: pki.sh DIR HOST_IP...
set -Eeuo pipefail
dir=$1; shift
# Built in a scratch directory and moved into place whole: a PKI cut short (a killed
# openssl, a full disk) is never taken for a finished one. openssl's own messages go to
# a log that is printed when a step fails, so CI says why.
work=$(mktemp -d "${dir%/}.tmp.XXXXXX")
trap 'rc=$?; echo "pki.sh: \"$BASH_COMMAND\" failed (exit $rc); openssl said:" >&2;
      cat "$work/openssl.log" >&2 2>/dev/null || true; rm -rf "$work"; exit $rc' ERR
cd "$work"
umask 077
days=3650

openssl genrsa -out ca.key 2048 2>>openssl.log
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=tickrun-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt 2>>openssl.log

# cert NAME SUBJECT USAGE [SAN]
cert() {
  local name=$1 subj=$2 usage=$3 san=${4:-}
  openssl genrsa -out "$name.key" 2048 2>>openssl.log
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>>openssl.log
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$name.ext" -out "$name.crt" 2>>openssl.log
  rm -f "$name.csr" "$name.ext"
}

ips="IP:127.0.0.1"
for ip in "$@"; do ips+=",IP:$ip"; done
cert apiserver "/CN=kube-apiserver" serverAuth \
  "$ips,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert admin "/O=system:masters/CN=tickrun-admin" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
cert kube-proxy "/CN=system:kube-proxy" clientAuth
cert coredns "/CN=system:coredns" clientAuth
cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME:-tickrun-node}" clientAuth
cert kubelet-serving "/CN=${NODE_NAME:-tickrun-node}" serverAuth \
  "$ips,DNS:${NODE_NAME:-tickrun-node},DNS:localhost"
openssl genrsa -out sa.key 2048 2>>openssl.log
openssl rsa -in sa.key -pubout -out sa.pub 2>>openssl.log
rm -f ca.srl openssl.log
trap - ERR
rm -rf "$dir"
mv "$work" "$dir"
