# The checks' counters and helpers, sourced by in-container.sh and quickstart.sh (alone, it
# counts its own). `checks_name` names the count `finish` prints.
checks_name=${checks_name:-checks}
passed=0
failed=0
log=$(mktemp)

# check DESCRIPTION COMMAND...: run it, count it, show its output when it fails.
check() {
  local what=$1
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok - $what"
  else
    failed=$((failed + 1))
    echo "not ok - $what"
    sed 's/^/    /' "$log"
  fi
}

# must DESCRIPTION COMMAND...: a step the rest depends on; stop if it fails.
must() {
  local before=$failed
  check "$@"
  if [ "$failed" -gt "$before" ]; then
    echo "# stopped: the checks after this one need it"
    finish
  fi
}

finish() {
  echo "$checks_name: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# wait_for SECONDS COMMAND...: until the command succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.5
  done
}
# The checks' own `bash -c` scripts wait with it too.
export -f wait_for
