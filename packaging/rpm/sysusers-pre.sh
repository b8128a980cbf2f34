#!/bin/sh
# sysusers-pre.sh FILE: prints the %pre scriptlet that makes the users and groups of a
# sysusers.d(5) file with groupadd/useradd, for rpm versions and distributions that do not
# read sysusers.d themselves (what %sysusers_create_compat expands to; see
# macros.systemd-fallback). Knows the two line types certvakt uses: "u NAME - GECOS HOME SHELL"
# (the user and its own group) and "g NAME -"; anything else stops the build with the line.
set -eu
file=$1
n=0
while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    case $line in '' | '#'*) continue ;; esac
    # The file is the project's own: its fields are words and one double-quoted GECOS.
    eval "set -- $line"
    type=$1 name=$2 id=${3:--}
    if [ "$id" != - ]; then
        echo "sysusers-pre.sh: $file line $n: only automatic ids (\"-\") are supported" >&2
        exit 1
    fi
    case $type in
    u)
        gecos=${4:--} home=${5:-/} shell=${6:-/usr/sbin/nologin}
        [ "$gecos" = - ] && gecos=""
        echo "getent group '$name' >/dev/null || groupadd -r '$name' || :"
        echo "getent passwd '$name' >/dev/null || useradd -r -g '$name' -d '$home' -s '$shell' -c '$gecos' '$name' || :"
        ;;
    g)
        echo "getent group '$name' >/dev/null || groupadd -r '$name' || :"
        ;;
    *)
        echo "sysusers-pre.sh: $file line $n: line type '$type' is not supported (u and g are)" >&2
        exit 1
        ;;
    esac
done <"$file"
