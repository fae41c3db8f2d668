#!/bin/sh
# nut-health: the image's HEALTHCHECK (installed as /usr/local/bin/nut-health).
#
# `nut-reconcile run` records its health verdict at every tick (reconcile/act/verdict.py):
# one line, "healthy: ..." or "unhealthy: ...", the same checks as `nut-reconcile health`
# (upsd answers, every UPS on the bus has fresh data, the shutdown path is whole). This
# reads that line instead of starting Python, and checks that it is fresh: the agent
# bumps the file's mtime at every tick, so an old file means its loop is stuck.
#
#   HEALTH_FILE     the verdict (default: NUT_STATEPATH's nut-reconcile.health, as the
#                   agent writes it; /var/run/nut/nut-reconcile.health in the image)
#   HEALTH_MAX_AGE  seconds the verdict may be old (default 60, or twice SCAN_INTERVAL or
#                   RESCAN_INTERVAL when that is longer: the loop beats once per pass)
#
# Prints one line. Exit 0: healthy; 1: unhealthy, or a bad setting. Never 2: Docker
# reserves it. Processes per check: this shell and one find (a stale verdict adds date).
# Needs only dash, GNU findutils and coreutils (Debian's essential packages).

set -u

unhealthy() {
    printf 'unhealthy: %s\n' "$1"
    exit 1
}

f=${HEALTH_FILE:-${NUT_STATEPATH:-/var/run/nut}/nut-reconcile.health}
case $f in
    # Why: a relative name could start with "-", which find would take for an option.
    /*) ;;
    *) unhealthy "HEALTH_FILE=$f is not an absolute path" ;;
esac

max=${HEALTH_MAX_AGE:-}
if [ -n "$max" ]; then
    case $max in
        # Why no leading zero: sh arithmetic reads 010 as octal, and 08 is an error (exit 2).
        # Why at most 9 digits: far beyond any real age, and safe in any shell's arithmetic.
        0* | *[!0-9]* | ??????????*)
            unhealthy "HEALTH_MAX_AGE=$max is not a positive whole number of seconds (e.g. 60)" ;;
    esac
else
    max=60
    # The agent's pass interval (SCAN_INTERVAL when polling, RESCAN_INTERVAL with uevents;
    # Docker hands the check the container's environment, and the agent has validated
    # both: digits, maybe a fraction) in whole seconds, leading zeros dropped (the octal
    # rule above): the verdict may be twice the longer one old.
    for scan in "${SCAN_INTERVAL:-}" "${RESCAN_INTERVAL:-}"; do
        scan=${scan%%.*}
        scan=${scan#"${scan%%[!0]*}"}
        case $scan in
            '' | *[!0-9]* | ??????*) ;;
            *) if [ $((scan * 2)) -gt "$max" ]; then max=$((scan * 2)); fi ;;
        esac
    done
fi

[ -f "$f" ] || unhealthy "no verdict from the agent at $f (is \`nut-reconcile run\` running?)"

line=
# Why 2>/dev/null before the <: redirections apply left to right, so the shell's own
# "cannot open" goes nowhere and the line below says what is wrong instead.
{ IFS= read -r line; } 2>/dev/null <"$f"
[ -n "$line" ] || unhealthy "cannot read the agent's verdict at $f (empty or not readable)"

# Why find: one process tells whether the file's mtime is within the last $max seconds by
# this machine's clock ("-N seconds" is relative to now), and prints the mtime (seconds
# since 1970, with a fraction) when it is not: "fresh" or that number.
when=$(find "$f" -newermt "-$max seconds" -printf 'fresh' -o -printf '%T@' 2>/dev/null)
if [ "$when" != fresh ]; then
    mtime=${when%.*}
    now=$(date +%s)
    case $mtime:$now in
        # Why checked: arithmetic on an empty or odd value would stop the shell (exit 2).
        :* | *: | *[!0-9:]*) unhealthy "cannot tell the age of the agent's verdict at $f" ;;
    esac
    unhealthy "the agent's last verdict is $((now - mtime)) s old (its loop is stuck?)"
fi

printf '%s\n' "$line"
case $line in
    healthy*) exit 0 ;;
    *) exit 1 ;;
esac
