"""The Harvester appliance's own programs: what runs inside the VM that `infra.appliance` builds.

- `cmdline`: the `harvester.*` kernel parameters, read as harvester-installer reads them (pkg/util/cmdline.go).
- `config`: the install config (harvester-installer pkg/config/config.go key names, snake_case or camelCase)
  and its validation in harvester-installer's words (pkg/console/validator.go).
- `preflight`: the hardware checks of harvester-installer pkg/preflight, skipped with `skipchecks`.
- `installer`: the unattended install the live system runs when `harvester.install.automatic=true`.
- `rootfs/`: the appliance's OS plumbing (busybox init's inittab and rc scripts), copied into the image.

Only the standard library, PyYAML and `infra.simulator` are imported here: this package runs on the
appliance, where nothing of the harness is installed.
"""
