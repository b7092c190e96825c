#!/bin/sh
# Respawned by init: busybox acpid, which runs /etc/acpi/PWRF/00000080 (poweroff) on the power button.
. /usr/lib/harvester-appliance/functions
if ! ls /dev/input/event* > /dev/null 2>&1; then
    say "acpid: no /dev/input/event* (button and evdev modules?): the ACPI power button will not power off"
    sleep_forever
fi
exec busybox acpid -f -c /etc/acpi -l /var/log/acpid.log
