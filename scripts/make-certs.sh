#!/usr/bin/env bash
# Makes a test PKI with the openssl CLI, for Sluice's TLS listeners:
#   ca.pem / ca.key            the CA (ssl.truststore.location for client certs)
#   server.pem / server.key    the broker, for 127.0.0.1 and localhost (ssl.keystore.location / ssl.key.location)
#   alice.pem / alice.key      a client, subject CN=alice,OU=eng,O=Sluice
#   bob.pem / bob.key          another client, CN=bob,OU=eng,O=Sluice
#   expired.pem / expired.key  a client whose certificate expired (CN=expired)
#   rogue-ca.pem, rogue.pem / rogue.key   a client signed by a CA nobody trusts
# Usage: scripts/make-certs.sh DIR   (DIR is created; existing files are replaced)
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
days=3650

ca() { # name subject
    openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "$2" \
        -keyout "$1.key" -out "$1.pem" 2>/dev/null
}

leaf() { # name subject ca extensions [openssl x509 options...]
    local name=$1 subject=$2 issuer=$3 extensions=$4
    shift 4
    openssl req -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf '%s\n' "$extensions" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
        -CAcreateserial -extfile "$name.ext" -out "$name.pem" "$@" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

ca ca "/O=Sluice/CN=Sluice Test CA"
ca rogue-ca "/O=Rogue/CN=Rogue CA"
leaf server "/O=Sluice/CN=localhost" ca \
    "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth" -days "$days"
client_ext="extendedKeyUsage=clientAuth"
leaf alice "/O=Sluice/OU=eng/CN=alice" ca "$client_ext" -days "$days"
leaf bob "/O=Sluice/OU=eng/CN=bob" ca "$client_ext" -days "$days"
leaf rogue "/O=Rogue/CN=mallory" rogue-ca "$client_ext" -days "$days"
# Expired: valid for one day, ten days ago. openssl 3.0's x509 cannot set
# the start date, so this one goes through `openssl ca` and a scratch database.
openssl req -newkey rsa:2048 -nodes -subj "/O=Sluice/OU=eng/CN=expired" \
    -keyout expired.key -out expired.csr 2>/dev/null
scratch=$(mktemp -d)
: > "$scratch/index.txt"
echo 1000 > "$scratch/serial"
cat > "$scratch/ca.cnf" <<CONF
[ca]
default_ca = test
[test]
database = $scratch/index.txt
new_certs_dir = $scratch
certificate = ca.pem
private_key = ca.key
serial = $scratch/serial
default_md = sha256
policy = anything
x509_extensions = client
[anything]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[client]
extendedKeyUsage = clientAuth
CONF
openssl ca -batch -notext -config "$scratch/ca.cnf" -in expired.csr -out expired.pem \
    -startdate "$(date -u -d '-10 days' +%Y%m%d%H%M%SZ)" \
    -enddate "$(date -u -d '-9 days' +%Y%m%d%H%M%SZ)" 2>/dev/null
rm -rf "$scratch" expired.csr
rm -f ./*.srl
echo "certificates in $PWD"
