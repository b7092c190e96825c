#!/bin/sh
# Respawned by init: OpenSSH's sshd in the foreground. Prints the host key on the console as cloud-init does.
. /usr/lib/harvester-appliance/functions
live && sleep_forever                    # the installer's live system serves no SSH
key=/etc/ssh/ssh_host_ed25519_key
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ ! -s "$key" ]; then
    say "no SSH host key from the install config: generating $key"
    ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname)" -f "$key"
fi
[ -s "$key.pub" ] || ssh-keygen -y -f "$key" > "$key.pub"
if [ ! -e "$STATE/host-keys-printed" ]; then
    {
        echo "-----BEGIN SSH HOST KEY KEYS-----"
        awk -v host="$(hostname)" '{print $1, $2, "root@" host}' "$key.pub"
        echo "-----END SSH HOST KEY KEYS-----"
    } > /dev/console
    touch "$STATE/host-keys-printed"
fi
( wait_for_port 22 60 && say "sshd started" ) &
exec /usr/sbin/sshd -D -e 2>> /var/log/sshd.log
