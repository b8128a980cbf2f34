#!/usr/bin/env bash
# Walks the README's quick start inside the package test's fresh Debian (tests/packages/run
# shares the README as /readme/README.md and the packages under /packages). The commands are
# the README's own: every ```sh block between <!-- quickstart:begin --> and
# <!-- quickstart:end -->, run in order as root, with one change: the deb's path
# ./target/package/ becomes /packages/. `sudo` runs its command as it is (we are root).
# Then checks what the quick start promises: the watched certificate and the managed one in
# `certvakt status` and `certvakt list`, the managed one issued from the import, and both in
# /metrics. Removes what it made at the end, so the checks after it start clean.
#
# in-container.sh sources it (its check, must and wait_for count the results); run alone it
# sources checks.sh itself and prints the count.
set -uo pipefail

if ! declare -F check >/dev/null; then
  checks_name="quick start checks"
  # shellcheck source=checks.sh
  . "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
  quickstart_alone=1
fi

echo "# the README's quick start"
qs_readme=/readme/README.md
qs_dir=$(mktemp -d)
# The person's working folder: the commands that need no root write their files here.
qs_home=$qs_dir/home
mkdir -p "$qs_home"

# Each ```sh block between the markers becomes block-N.sh.
awk -v dir="$qs_dir" '
  /^<!-- quickstart:begin -->$/ { inside = 1; next }
  /^<!-- quickstart:end -->$/ { inside = 0; next }
  inside && /^```sh$/ { n++; file = sprintf("%s/block-%02d.sh", dir, n); next }
  inside && file != "" && /^```$/ { close(file); file = ""; next }
  file != "" { print > file }
' "$qs_readme"
qs_blocks=("$qs_dir"/block-*.sh)
must "the README's quick start has its sh blocks between the markers (${#qs_blocks[@]})" \
  test -f "$qs_dir/block-01.sh"
must "the quick start installs the deb from ./target/package/" \
  grep -q 'apt install \./target/package/certvakt_\*_amd64\.deb' "${qs_blocks[@]}"
sed -i 's|\./target/package/certvakt_|/packages/certvakt_|g' "${qs_blocks[@]}"

# A person answers apt's question; here apt assumes yes.
printf 'APT::Get::Assume-Yes "true";\n' >"$qs_dir/apt.conf"
# sudo as the quick start uses it: run the command (with its arguments) as root, which we are.
qs_run_block() {
  (
    cd "$qs_home" || exit 1
    sudo() { "$@"; }
    export -f sudo
    export HOME=$qs_home APT_CONFIG=$qs_dir/apt.conf
    bash -e -o pipefail -x "$1"
  )
}
# A block that only looks (status, list, tasks, task show, curl) is looked at again for a
# while, as a person would, when what it shows is not there yet: the daemon works on its own
# after a reload or an import.
qs_only_looks() {
  ! grep -vE '^(sudo )?(certvakt (status|list|tasks|task show)( |$)|systemctl status |curl -s )|^$' "$1" |
    grep -q .
}
for block in "${qs_blocks[@]}"; do
  first=$(head -1 "$block")
  if qs_only_looks "$block"; then
    must "quick start: $first …" wait_for 60 qs_run_block "$block"
  else
    must "quick start: $first …" qs_run_block "$block"
  fi
done

# What the quick start promised.
qs_cert=/etc/certvakt/certs/quickstart/cert.pem
qs_key=/etc/certvakt/certs/quickstart/key.pem
qs_watched=/etc/ssl/certs/quickstart/intranet.pem
qs_installed() {
  [ -f "$qs_cert" ] &&
    [ "$(openssl x509 -noout -serial -in "$qs_cert")" = "$(openssl x509 -noout -serial -in "$qs_home/issued.pem")" ]
}
check "the managed certificate is the one the import handed over, installed at $qs_cert" \
  wait_for 30 qs_installed
check "the installed key belongs to the installed certificate" bash -c "
  [ \"\$(openssl x509 -noout -pubkey -in '$qs_cert')\" = \"\$(openssl pkey -pubout -in '$qs_key')\" ]"
qs_status_ok() {
  certvakt status >"$qs_dir/status.txt" 2>&1
  local code=$?
  cat "$qs_dir/status.txt"
  [ "$code" -eq 0 ]
}
check "certvakt status says OK (exit 0) once the run is over" wait_for 30 qs_status_ok
check "certvakt status lists the managed certificate" grep -q 'quickstart' "$qs_dir/status.txt"
check "certvakt status counts both certificates as ok" bash -c "
  certvakt --json status | tee /dev/stderr | grep -Eq '\"ok\": *2,?\$'"
check "certvakt list shows the watched certificate and the managed one" bash -c "
  certvakt list | tee '$qs_dir/list.txt' &&
  grep -q '$qs_watched' '$qs_dir/list.txt' && grep -qw 'quickstart' '$qs_dir/list.txt'"
check "certvakt list shows both as ok" bash -c "
  grep -F '$qs_watched' '$qs_dir/list.txt' | grep -qw ok &&
  grep -w 'quickstart' '$qs_dir/list.txt' | grep -qw ok"
check "the task of the first issue is closed" bash -c "! certvakt tasks | grep -q quickstart-1-1"
check "/metrics has certvakt_certificate_expiry_seconds for both" bash -c "
  curl -sf http://127.0.0.1:9617/metrics > '$qs_dir/metrics.txt' &&
  grep -E '^certvakt_certificate_expiry_seconds\{.*id=\"quickstart\"' '$qs_dir/metrics.txt' &&
  grep -E '^certvakt_certificate_expiry_seconds\{.*id=\"$qs_watched\"' '$qs_dir/metrics.txt'"

# Leave the system as the quick start found it.
apt-get purge -y -q certvakt >/dev/null 2>&1 || true
rm -rf /etc/certvakt /var/lib/certvakt /etc/ssl/certs/quickstart "$qs_dir"

if [ -n "${quickstart_alone:-}" ]; then
  finish
fi
