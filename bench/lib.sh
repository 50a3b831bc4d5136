# Shared by the scripts in bench/ (sourced, not run): a scratch folder removed on exit, and the simulator started in
# a process of its own so that what a script measures of bench is bench's alone.

work=$(mktemp -d)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# start_sim BINARY [SIM FLAGS...]: serves the simulator on a free loopback port and sets $url.
start_sim() {
    local binary=$1
    shift
    "$binary" sim --port 0 "$@" >"$work/sim.url" 2>"$work/sim.log" &
    sim_pid=$!
    for _ in $(seq 100); do
        [ -s "$work/sim.url" ] && break
        sleep 0.1
    done
    url=$(head -n1 "$work/sim.url")
    [ -n "$url" ] || { echo "the simulator did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
}
