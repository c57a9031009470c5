#!/usr/bin/env bash
# make demo: a client holds an idle TCP connection to a local listener,
# once without kawrap and once under `kawrap --profile 300/30/5`; `ss -o`
# shows what the kernel will do about a dead peer in each case.
set -euo pipefail
cd "$(dirname "$0")/.."
kawrap=${CARGO_TARGET_DIR:-target}/release/kawrap
command -v python3 >/dev/null || { echo "demo needs python3" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
conns = []
while True:
    conns.append(s.accept()[0])
PY
server=$!
trap 'kill $server 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 50); do ss -tlnH "sport = :$port" | grep -q . && break; sleep 0.1; done

# A legacy client that never asks for keepalive: just connects and waits.
client='import socket, sys, time; s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); time.sleep(3)'

show() {
    for _ in $(seq 50); do
        line=$(ss -tnoH state established "( dport = :$port )")
        [ -n "$line" ] && break
        sleep 0.1
    done
    echo "    ss -tno: $line"
}

echo "== without kawrap: Linux's defaults (no keepalive: a dead peer is never noticed while idle)"
echo "    \$ python3 -c '<connect and wait>'"
python3 -c "$client" "$port" & pid=$!
show; wait $pid

echo
echo "== under kawrap: keepalive probes after 300 s idle, dead peer noticed after $( $kawrap profiles | awk '$1=="recommended"{print $3, $4, $5, $6}' )"
echo "    \$ kawrap --profile 300/30/5 python3 -c '<connect and wait>'"
$kawrap --profile 300/30/5 python3 -c "$client" "$port" & pid=$!
show; wait $pid
echo
echo "timer:(keepalive,4min59sec,0) is the keepalive timer counting down from 300 s — the 'ka' to look for."
