# shellcheck shell=bash
# Shared by the real-engine checks (sourced, not run): the output folder, the pass/fail tally,
# per-phase timings, and the closing line `NAME: N passed, M failed` that CI reads.
#
#   source "$engines/common.sh"
#   check_init NAME WORKDIR ROOT    # empties WORKDIR (never /, ROOT or $HOME)
#   log …; tally_add ok|fail WHAT; phase_done PHASE START; abort WHAT; finish

check_init() {
    check_name=$1
    work=$2
    case $work in
    / | "$3" | "$HOME" | "") echo "refusing to use $work as the output folder (it is emptied)" >&2; exit 2 ;;
    esac
    rm -rf "$work"
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    tally=$work/tally
    echo "0 0" >"$tally"
    t0=$(date +%s)
    timings=()
}

log() { printf '[%s] %s\n' "$check_name" "$*" >&2; }
phase_done() { timings+=("$(printf '%-28s %4d s' "$1" $(($(date +%s) - $2)))"); }
tally_add() { # ok|fail WHAT
    local p f
    read -r p f <"$tally"
    if [[ $1 == ok ]]; then p=$((p + 1)); echo "  ok   $2"; else f=$((f + 1)); echo "  FAIL $2"; fi
    echo "$p $f" >"$tally"
}
finish() {
    local p f
    read -r p f <"$tally"
    echo
    echo "timings:"
    printf '  %s\n' "${timings[@]}"
    printf '  %-28s %4d s\n' "total" $(($(date +%s) - t0))
    echo "outputs: $work"
    echo "$check_name: $p passed, $f failed"
    [[ $f -eq 0 && $p -gt 0 ]]
}
abort() { # a step without which nothing else can be checked
    tally_add fail "$1"
    finish
    exit 1
}
