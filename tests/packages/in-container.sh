#!/usr/bin/env bash
# Runs inside a fresh Debian booted with systemd (started by tests/packages/run). The deb and
# the rpm are under /packages; /exchange is shared with the host (results). Each check prints
# "ok - ..." or "not ok - ..."; the last line counts them.
set -uo pipefail
cd /
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

checks_name="checks in the container"
# shellcheck source=checks.sh
. "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

main_pid() { systemctl show -p MainPID --value certvakt.service; }
proc_field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$(main_pid)/status"; }

deb=$(ls /packages/certvakt_*_amd64.deb)
deb_next=$(ls /packages/next/certvakt_*_amd64.deb)
rpm=$(ls /packages/certvakt-*.x86_64.rpm)

echo "# the deb: $deb"
must "apt installs the deb on a fresh Debian without asking for anything" \
  apt-get install -y -q --no-install-recommends "$deb"
check "the service is enabled" systemctl -q is-enabled certvakt.service
check "the service is running (Type=notify: it said READY)" \
  wait_for 30 systemctl -q is-active certvakt.service
check "the unit passes systemd-analyze verify" \
  systemd-analyze verify /usr/lib/systemd/system/certvakt.service \
  /usr/lib/systemd/system/certvakt-reload@.service
check "the unit's exposure is at most 2.0 (systemd-analyze security)" bash -c '
  systemd-analyze security certvakt.service | tee /exchange/security.txt >/dev/null
  level=$(sed -n "s/.*Overall exposure level for certvakt.service: \([0-9.]*\).*/\1/p" /exchange/security.txt)
  echo "exposure: $level"
  awk -v l="$level" "BEGIN { exit !(l != \"\" && l <= 2.0) }"'
check "the daemon runs as certvakt, without privileges, under a seccomp filter" bash -c "
  [ \"\$(id -u certvakt)\" = \"$(proc_field Uid | cut -f1)\" ] &&
  [ \"$(proc_field NoNewPrivs)\" = 1 ] && [ \"$(proc_field CapEff)\" = 0000000000000000 ] &&
  [ \"$(proc_field CapBnd)\" = 0000000000000000 ] && [ \"$(proc_field Seccomp)\" = 2 ]"
check "user certvakt and groups certvakt, certvakt-admin exist" \
  bash -c 'getent passwd certvakt && getent group certvakt && getent group certvakt-admin'
check "/var/lib/certvakt is 0750 certvakt:certvakt" \
  bash -c '[ "$(stat -c %a:%U:%G /var/lib/certvakt)" = 750:certvakt:certvakt ]'
check "systemd-tmpfiles keeps an operator's owner and mode of /etc/certvakt/certs" bash -c '
  chown root:certvakt-admin /etc/certvakt/certs && chmod 0750 /etc/certvakt/certs &&
  systemd-tmpfiles --create certvakt.conf &&
  [ "$(stat -c %a:%U:%G /etc/certvakt/certs)" = 750:root:certvakt-admin ]'
chown certvakt:certvakt /etc/certvakt/certs && chmod 0755 /etc/certvakt/certs
check "systemd-tmpfiles still makes a missing directory, owned as packaged" bash -c '
  rmdir /var/lib/certvakt/reload && systemd-tmpfiles --create certvakt.conf &&
  [ "$(stat -c %a:%U:%G /var/lib/certvakt/reload)" = 750:certvakt:certvakt ]'
check "the shipped configuration is a conffile" \
  bash -c 'dpkg-query -W -f="\${Conffiles}" certvakt | grep -q " /etc/certvakt/certvakt.toml "'
check "certvaktd check-config accepts the shipped configuration as user certvakt" \
  runuser -u certvakt -- /usr/sbin/certvaktd check-config
check "the installed CLI talks to the daemon (certvakt status)" certvakt status
check "certvakt plugins lists the seven shipped plugins" bash -c '
  out=$(certvakt plugins); echo "$out"
  for p in acme manual dk-fmk dk-nemlogin no-nhn se-efrikort fi-kanta; do grep -qw -- "$p" <<<"$out" || exit 1; done'
check "the man pages open" bash -c 'for p in certvakt.1 certvaktd.8 certvakt.toml.5; do
  zcat "/usr/share/man/man${p##*.}/$p.gz" | grep -q "^\.TH" || exit 1; done'
check "bash completes certvakt's subcommands" bash -c '
  source /usr/share/bash-completion/completions/certvakt
  COMP_WORDS=(certvakt ren); COMP_CWORD=1; COMP_LINE="certvakt ren"; COMP_POINT=${#COMP_LINE}
  _certvakt certvakt ren certvakt; printf "%s\n" "${COMPREPLY[@]}" | grep -qx renew'

# Who may do what: the socket decides by the caller's groups.
useradd --create-home --groups certvakt-admin alice
useradd --create-home --groups certvakt viewer
useradd --create-home stranger
check "a member of certvakt-admin may reload" runuser -u alice -- certvakt reload
check "a member of certvakt may look (status)" runuser -u viewer -- certvakt status
check "a member of certvakt may not reload (exit 4)" \
  bash -c 'runuser -u viewer -- certvakt reload; [ $? -eq 4 ]'
check "a user in neither group is refused (exit 4)" \
  bash -c 'runuser -u stranger -- certvakt status; [ $? -eq 4 ]'

# A certificate in a folder the unit does not open for writing: the daemon says so at start.
install -d /srv/other
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5 \
    -subj /CN=other -keyout /srv/other/key.pem -out /srv/other/cert.pem 2>/dev/null
printf '[[certificate]]\nid = "other"\ncert = "/srv/other/cert.pem"\nplugin = "manual"\n[certificate.settings]\nca_name = "Some CA"\n' \
  >/etc/certvakt/conf.d/40-other.toml
check "a certificate in a read-only folder is named at start, with the drop-in to fix it" bash -c '
  named() {
    journalctl -q -u certvakt --no-pager | grep -F "certvaktd cannot write to /srv/other" |
      grep -qF "ReadWritePaths=/srv/other"
  }
  systemctl restart certvakt && wait_for 30 named ||
    { journalctl -q -u certvakt --no-pager | tail -20; exit 1; }'
rm /etc/certvakt/conf.d/40-other.toml
systemctl restart certvakt

# A renewal under the hardened unit: the manual plugin's CSR, signed by a local CA, imported,
# installed into /etc/certvakt/certs, and a reload of the service that uses it through the
# certvakt-reload@ path unit (no privileges for certvakt).
work=$(mktemp -d)
chmod 0755 "$work"   # the operator reads the issued certificate from here
must "a test CA and the current certificate for shop.example" bash -c "
  cd $work &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj '/CN=Package Test CA' -keyout ca.key -out ca.pem &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=shop.example' \
    -keyout shop.key -out shop.csr &&
  openssl x509 -req -in shop.csr -CA ca.pem -CAkey ca.key -days 45 -out shop.pem \
    -extfile <(printf 'subjectAltName=DNS:shop.example\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n') &&
  install -d -o certvakt -g certvakt -m 0755 /etc/certvakt/certs/shop &&
  install -o certvakt -g certvakt -m 0644 shop.pem /etc/certvakt/certs/shop/cert.pem &&
  install -o certvakt -g certvakt -m 0600 shop.key /etc/certvakt/certs/shop/key.pem"
cat >/etc/systemd/system/shop-web.service <<'UNIT'
[Unit]
Description=A service that uses the shop certificate
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'sha256sum /etc/certvakt/certs/shop/cert.pem >> /run/shop-web-reloads'
UNIT
cat >/etc/certvakt/conf.d/50-shop.toml <<'TOML'
[[certificate]]
id = "shop"
cert = "/etc/certvakt/certs/shop/cert.pem"
key = "/etc/certvakt/certs/shop/key.pem"
fullchain = "/etc/certvakt/certs/shop/fullchain.pem"
plugin = "manual"
deploy_hook = ["/usr/bin/touch", "/var/lib/certvakt/reload/shop-web.service"]

[certificate.settings]
ca_name = "Package Test CA"
TOML
systemctl daemon-reload
must "the service that uses the certificate runs" systemctl start shop-web.service
must "certvakt-reload@shop-web.service.path is enabled and watching" \
  systemctl enable --now certvakt-reload@shop-web.service.path
# The unit's ExecReload signals the daemon (SIGHUP), which then applies the file: wait for it.
must "systemctl reload certvakt applies the new certificate entry" \
  bash -c 'systemctl reload certvakt && wait_for 20 certvakt show shop'
check "bash completes certvakt show with the daemon's certificate ids" bash -c '
  source /usr/share/bash-completion/completions/certvakt
  function=$(complete -p certvakt | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
  COMP_WORDS=(certvakt show ""); COMP_CWORD=2; COMP_LINE="certvakt show "; COMP_POINT=${#COMP_LINE}
  "$function" certvakt "" show; printf "%s\n" "${COMPREPLY[@]}" | grep -qx shop'
must "certvakt renew shop --force opens the manual order task" bash -c '
  csr=/var/lib/certvakt/certs/shop/outbox/*/request.csr
  certvakt renew shop --force && wait_for 30 compgen -G "$csr" && cp $csr '"$work"'/new.csr'
check "the pending key is 0600 and belongs to certvakt" \
  bash -c '[ "$(stat -c %a:%U /var/lib/certvakt/certs/shop/pending-key.pem)" = 600:certvakt ]'
must "the CA signs the CSR and the operator imports it" bash -c "
  cd $work &&
  openssl x509 -req -in new.csr -CA ca.pem -CAkey ca.key -days 60 -out new.pem \
    -extfile <(printf 'subjectAltName=DNS:shop.example\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n') &&
  cat new.pem ca.pem > new-chain.pem &&
  runuser -u alice -- certvakt import shop $work/new-chain.pem"
check "the new certificate is installed, the key 0600" bash -c "
  wait_for 30 cmp -s /etc/certvakt/certs/shop/cert.pem $work/new.pem &&
  [ \"\$(stat -c %a:%U /etc/certvakt/certs/shop/key.pem)\" = 600:certvakt ] &&
  openssl x509 -in /etc/certvakt/certs/shop/fullchain.pem -noout -subject"
check "the path unit reloaded shop-web with the new certificate" bash -c "
  want=\$(sha256sum < $work/new.pem | cut -d' ' -f1)
  wait_for 30 grep -qs \"\$want\" /run/shop-web-reloads || { cat /run/shop-web-reloads; exit 1; }"
check "certvakt status is healthy after the renewal" certvakt status

# Upgrade: the operator's configuration and certvakt's state stay; the new daemon runs.
echo '# an operator edit' >>/etc/certvakt/certvakt.toml
state_before=$(ls /var/lib/certvakt/certs/shop)
pid_before=$(main_pid)
must "apt upgrades to the next package" apt-get install -y -q "$deb_next"
check "the upgrade kept the edited configuration" grep -q '^# an operator edit' /etc/certvakt/certvakt.toml
check "the upgrade kept certvakt's state" bash -c "[ \"\$(ls /var/lib/certvakt/certs/shop)\" = \"$state_before\" ]"
restarted() {
  local pid
  pid=$(main_pid)
  [ "$pid" != 0 ] && [ "$pid" != "$pid_before" ] && systemctl -q is-active certvakt
}
check "the upgrade restarted the daemon, which runs" wait_for 30 restarted
check "after the upgrade, certvakt show shop still knows the renewal" certvakt show shop

# Removal keeps the configuration and the state; purge removes them, not the live certificates.
must "apt removes the package" apt-get remove -y -q certvakt
check "the service is gone after removal" bash -c '! systemctl -q is-active certvakt.service'
check "removal kept the configuration and the state" \
  bash -c '[ -f /etc/certvakt/certvakt.toml ] && [ -d /var/lib/certvakt/certs/shop ]'
must "apt purges the package" apt-get purge -y -q certvakt
check "purge removed the configuration and the state" \
  bash -c '[ ! -e /etc/certvakt/certvakt.toml ] && [ ! -e /var/lib/certvakt ]'
check "purge kept the live certificates in use" \
  bash -c '[ -f /etc/certvakt/certs/shop/key.pem ] && [ -f /etc/certvakt/certs/shop/cert.pem ]'
rm -rf /etc/certvakt /etc/systemd/system/certvakt-reload@shop-web.service.path \
  /etc/systemd/system/paths.target.wants

. /tests/quickstart.sh # the README's quick start, on the system the purge left
echo "# the rpm: $rpm"
# rpm has no database of this Debian's packages: its dependencies are Debian's here.
must "rpm installs the rpm (scriptlets included)" rpm -i --nodeps "$rpm"
# The rpm ships no preset: enabling is the distribution's preset policy or the operator's.
check "the rpm ships no preset; systemctl enable --now certvakt starts it" bash -c '
  ! compgen -G "/usr/lib/systemd/system-preset/*certvakt*" &&
  systemctl enable --now certvakt && wait_for 30 systemctl -q is-active certvakt'
check "rpm -V: the installed files are as packaged (dependencies are Debian's here)" rpm -V --nodeps certvakt
check "the rpm's CLI talks to its daemon" certvakt status
check "certvaktd check-config accepts the rpm's configuration as user certvakt" \
  runuser -u certvakt -- /usr/sbin/certvaktd check-config
must "rpm erases the package" rpm -e certvakt
check "erase stopped and disabled the service" \
  bash -c '! systemctl -q is-active certvakt && ! systemctl -q is-enabled certvakt 2>/dev/null'

finish
