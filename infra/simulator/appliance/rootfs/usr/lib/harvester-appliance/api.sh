#!/bin/sh
# Respawned by init: the Harvester API of this node, the simulator in --this-machine mode on :6443, with its
# kubeconfig at /etc/rancher/rke2/rke2.yaml. A failing service backs off (10 s doubling to 5 min) and never
# holds anything else up.
. /usr/lib/harvester-appliance/functions
live && sleep_forever
if ! load_node_env; then
    say "api: no $NODE_ENV (not installed by the appliance's installer): no Harvester API on this node"
    sleep_forever
fi
if [ "$INSTALL_MODE" = join ]; then
    say "api: join mode (server_url $SERVER_URL): this node joins nothing and serves no API of its own"
    sleep_forever
fi
mkdir -p "$STATE" /etc/rancher/rke2 /var/lib/harvester-appliance/state
nic=$(cat "$STATE/management-interface" 2>/dev/null)
waited=0
node_ip=""
while [ "$waited" -lt 300 ]; do
    for candidate in $nic $(ls /sys/class/net); do
        [ "$candidate" = lo ] && continue
        node_ip=$(ip -4 -o addr show dev "$candidate" scope global 2>/dev/null \
                  | awk -v vip="$VIP" '{split($4, a, "/"); if (a[1] != vip) {print a[1]; exit}}')
        [ -n "$node_ip" ] && break
    done
    [ -n "$node_ip" ] && break
    sleep 1
    waited=$((waited + 1))
done
if [ -z "$node_ip" ]; then
    say "api: no IPv4 address on ${nic:-any NIC} after 300s; retrying"
    sleep 10
    exit 1
fi
rm -f "$STATE/ready.json"
say "api starting: Harvester $HARVESTER_VERSION, VIP ${VIP:--}, node IP $node_ip"
PYTHONPATH=/opt/harvester-appliance/lib PYTHONDONTWRITEBYTECODE=1 python3 -m infra.simulator \
    --this-machine --state-dir /var/lib/harvester-appliance/state --bind 0.0.0.0 --port 6443 \
    --tls-san "${VIP:-$node_ip}" --node-ip "$node_ip" --kubeconfig /etc/rancher/rke2/rke2.yaml \
    --version "$HARVESTER_VERSION" --ready-file "$STATE/ready.json" >> /var/log/harvester-appliance.log 2>&1 &
pid=$!
( while kill -0 "$pid" 2>/dev/null; do
      if [ -s "$STATE/ready.json" ]; then say "api ready"; echo 0 > "$STATE/api-failures"; break; fi
      sleep 2
  done ) &
wait "$pid"
status=$?
failures=$(( $(cat "$STATE/api-failures" 2>/dev/null || echo 0) + 1 ))
echo "$failures" > "$STATE/api-failures"
pause=10
i=1
while [ "$i" -lt "$failures" ] && [ "$pause" -lt 300 ]; do pause=$((pause * 2)); i=$((i + 1)); done
[ "$pause" -gt 300 ] && pause=300
say "api exited with status $status (/var/log/harvester-appliance.log: $(tail -n 1 /var/log/harvester-appliance.log 2>/dev/null | cut -c1-160)); restart in ${pause}s"
sleep "$pause"
exit "$status"
