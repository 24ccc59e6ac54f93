#!/bin/sh
# mkcerts.sh DIR: throwaway certificates for the test issuer, made with the
# openssl CLI (OpenSSL 3.0 or later).  EC P-256 keys: fast to make and to use.
#
#   ca.pem ca.key               the test CA
#   server.pem server.key       signed by it; SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   wronghost.pem .key          signed by it; SAN DNS:wrong.example only
#   expired.pem .key            signed by it; valid only in 2020
#   otherca.pem otherca.key     a second CA that nobody trusts
#   untrusted.pem .key          localhost cert signed by the other CA
#
# Idempotent: when every file is present and server.pem is valid for another
# day, nothing is done.  Otherwise everything is made afresh in a temporary
# folder and moved into DIR, so a reader never sees a half-made set.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"

all="ca.pem ca.key server.pem server.key wronghost.pem wronghost.key
expired.pem expired.key otherca.pem otherca.key untrusted.pem untrusted.key"

complete=yes
for f in $all; do
	[ -s "$dir/$f" ] || complete=no
done
if [ $complete = yes ] &&
    openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
	exit 0
fi

work=$(mktemp -d "$dir/.mkcerts.XXXXXX")
# openssl chatters on stderr: keep it in a file, show it only on failure.
exec 3>&2 2>"$work/openssl.log"
trap 'rc=$?; [ $rc -eq 0 ] || { echo "$0: failed:" >&3; cat "$work/openssl.log" >&3; }; rm -rf "$work"' EXIT
trap 'exit 1' INT TERM
cd "$work"
umask 077

newkey() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# mkca NAME CN: a self-signed CA certificate NAME.pem with key NAME.key.
mkca() {
	newkey "$1.key"
	openssl req -new -x509 -key "$1.key" -out "$1.pem" -days 3650 \
	    -subj "/CN=$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# mkleaf NAME CA SAN: a server certificate NAME.pem/NAME.key signed by CA.
mkleaf() {
	newkey "$1.key"
	openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
	cat > "$1.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $3
EOF
	openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
	    -set_serial "0x$(openssl rand -hex 8)" -days 825 \
	    -extfile "$1.ext" -out "$1.pem"
}

good_san="DNS:localhost,IP:127.0.0.1,IP:::1"

mkca ca "tokend test CA"
mkca otherca "tokend untrusted test CA"
mkleaf server ca "$good_san"
mkleaf wronghost ca "DNS:wrong.example"
mkleaf untrusted otherca "$good_san"

# expired: `openssl x509 -req` in OpenSSL 3.0 has no -not_before/-not_after
# (they came in 3.4), but `openssl ca` takes -startdate/-enddate, so sign the
# expired certificate with a minimal `openssl ca` setup.
newkey expired.key
openssl req -new -key expired.key -out expired.csr -subj "/CN=expired"
: > index.txt
echo 01 > serial.txt
cat > ca.cnf <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
serial = serial.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
x509_extensions = leaf_ext
[policy_any]
commonName = supplied
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $good_san
EOF
openssl ca -batch -config ca.cnf -notext \
    -startdate 20200101000000Z -enddate 20200201000000Z \
    -in expired.csr -out expired.pem

# Certificates are public; keys stay 0600.
chmod 644 ./*.pem
for f in $all; do
	mv -f "$f" "$dir/$f"
done
