#!/bin/sh
# Signatures per second through the practitioner's signer, beside OpenSSL's
# own figure measured in the same run (the machines are shared and noisy:
# only the ratio means something).
#
#   B=build sh tests/bench/bench_signer.sh
#
# For each backend (file, SoftHSM2 through pkcs11) and key (ES256, PS256)
# it starts build/vitaled on a private socket, logs in, and asks
# SignerSelfTest for N signatures: the rounds run back to back on the
# signer's worker thread (hash + sign + r||s for ES256; PSS for PS256), so
# the figure is the backend's throughput, not the API's. The baseline is
# `openssl speed -seconds 1 ecdsap256` / `rsa2048` (sign/s).
# Prints "| row | value | baseline | ratio |" lines (tests/bench/run.sh prints
# the table header).
set -eu

B=${B:-build}
case $B in /*) ;; *) B=$(pwd)/$B ;; esac
VITALED=$B/vitaled
VITALECTL=$B/vitalectl
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
[ -x "$VITALED" ] && [ -x "$VITALECTL" ] || { echo "bench_signer: build first ($VITALED)" >&2; exit 77; }

tmp=$(mktemp -d /tmp/vbench.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM HUP

speed() { # $1 = ecdsap256 | rsa2048 -> sign/s
	openssl speed -seconds 1 "$1" 2>/dev/null | awk -v k="$1" '
		k == "rsa2048" && /^rsa 2048 bits/ { print $(NF-1) }
		k == "ecdsap256" && /ecdsa \(nistp256\)/ { print $(NF-1) }'
}

# $1 name, $2 config text, $3 PIN or "", $4 rounds -> sig/s on stdout
measure() {
	dir=$tmp/$1
	mkdir -p "$dir"
	printf '%s\n' "$2" > "$dir/vitaled.conf"
	"$VITALED" --config "$dir/vitaled.conf" --socket "$dir/s.sock" --state-dir "$dir/state" \
		--log-level warning 2>"$dir/log" &
	pid=$!
	i=0
	while [ ! -S "$dir/s.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	i=0 # wait for the backend to open
	while [ $i -lt 100 ]; do
		st=$("$VITALECTL" --socket "$dir/s.sock" --json signer 2>/dev/null | sed -n 's/.*"state": "\([a-z-]*\)".*/\1/p')
		[ "$st" = locked ] || [ "$st" = ready ] && break
		sleep 0.05
		i=$((i + 1))
	done
	if [ -n "$3" ]; then
		printf '%s\n' "$3" | "$VITALECTL" --socket "$dir/s.sock" pin >/dev/null
	fi
	"$VITALECTL" --socket "$dir/s.sock" --json signer test "$4" |
		sed -n 's/.*"signatures_per_s": \([0-9.e+]*\).*/\1/p'
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
}

row() { # name value baseline
	awk -v n="$1" -v v="$2" -v b="$3" 'BEGIN {
		if (v == "" || b == "" || b + 0 == 0) { printf "| %s | %s | %s | - |\n", n, v, b; exit }
		printf "| %s | %.0f sig/s | %.0f sig/s | %.3f |\n", n, v, b, v / b }'
}

ec_base=$(speed ecdsap256)
rsa_base=$(speed rsa2048)

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ec.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.pem" 2>/dev/null
chmod 600 "$tmp/ec.pem" "$tmp/rsa.pem"

v=$(measure file-ec "[signer]
backend = file
key_file = $tmp/ec.pem" "" 10000)
row "signer file ES256 (vs openssl speed ecdsap256)" "$v" "$ec_base"
v=$(measure file-rsa "[signer]
backend = file
key_file = $tmp/rsa.pem" "" 1000)
row "signer file PS256 (vs openssl speed rsa2048)" "$v" "$rsa_base"

if [ -r "$SOFTHSM" ] && command -v softhsm2-util >/dev/null && command -v pkcs11-tool >/dev/null; then
	mkdir -p "$tmp/hsm/tokens"
	printf 'directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$tmp" > "$tmp/hsm/softhsm2.conf"
	SOFTHSM2_CONF=$tmp/hsm/softhsm2.conf
	export SOFTHSM2_CONF
	for t in EC:prime256v1 rsa:2048; do
		label=B$(echo "$t" | cut -c1-2 | tr a-z A-Z)
		softhsm2-util --init-token --free --label "$label" --so-pin 87654321 --pin 2468 >/dev/null
		pkcs11-tool --module "$SOFTHSM" --token-label "$label" --login --pin 2468 --keypairgen \
			--key-type "$t" --id 01 --label SIGN >/dev/null 2>&1
	done
	v=$(measure hsm-ec "[signer]
backend = pkcs11
module = $SOFTHSM
token = BEC
key = SIGN" 2468 10000)
	row "signer SoftHSM2 ES256 (vs openssl speed ecdsap256)" "$v" "$ec_base"
	v=$(measure hsm-rsa "[signer]
backend = pkcs11
module = $SOFTHSM
token = BRS
key = SIGN" 2468 1000)
	row "signer SoftHSM2 PS256 (vs openssl speed rsa2048)" "$v" "$rsa_base"
else
	echo "| signer SoftHSM2 | skipped (softhsm2 not installed) | - | - |"
fi
