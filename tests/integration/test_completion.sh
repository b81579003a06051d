#!/bin/sh
# The bash completion (packaging/bash-completion/vitalectl) under the real
# bash-completion library: it offers every command of `vitalectl --help`
# (a new command without completion fails here), the sheet subcommands,
# the options of sheet create (--input among them) and of sheet list, the
# states after --state, and files after --input.
set -eu
B=${B:-build}
comp=/usr/share/bash-completion/bash_completion
[ -r "$comp" ] || { echo "bash-completion is not installed (packaging/deps.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/till.json"
cmds=$("$B/vitalectl" --help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' | sort | tr '\n' ' ')
PATH="$B:$PATH" bash -c '
. '"$comp"'
. packaging/bash-completion/vitalectl
c() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
      COMPREPLY=(); _vitalectl; printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "; }
fail=0
want() { case " $1 " in *" $2 "*) ;; *) echo "FAIL: $3: no \"$2\" in: $1"; fail=1 ;; esac; }
got=$(c vitalectl "")
for w in '"$cmds"'; do want "$got" "$w" "commands"; done
got=$(c vitalectl sheet ""); for w in create draft complete list show export print verify; do want "$got" "$w" "sheet"; done
got=$(c vitalectl --json sheet create --); for w in --input --reader --act --degraded --json; do want "$got" "$w" "sheet create"; done
got=$(c vitalectl sheet list --); want "$got" --practitioner "sheet list"
got=$(c vitalectl sheet list --state ""); want "$got" queued "--state"
got=$(c vitalectl sheet create --input '"$tmp"'/t); want "$got" '"$tmp"'/till.json "--input FILE"
got=$(c vitalectl --); for w in --socket --timeout --json --help --version; do want "$got" "$w" "global"; done
[ $fail -eq 0 ] && echo "completion: commands, subcommands, options, states and files offered"
exit $fail
'
