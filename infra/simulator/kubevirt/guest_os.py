"""What a VM image puts on a disk, and what cloud-init does with it at the guest's first boot.

The image. Harvester gives each VirtualMachineImage a StorageClass `longhorn-<image>` whose parameter
`backingImage` names the image's Longhorn backing image (`images.py`); a volume of that class starts as a copy
of the image. Here an image's content is a small Linux root filesystem (`base_files`): os-release, root's
passwd/group/shadow entries, sudoers with `#includedir /etc/sudoers.d`, and `/etc/cloud/cloud.cfg` whose
`system_info.default_user` names the image's default login, as a cloud image's own cloud.cfg does. Which OS:
the image's `harvesterhci.io/os-type` label (what Harvester's UI sets), else a distribution named in its
display name or URL, else Ubuntu. A volume of any other class (`harvester-longhorn`, whatever the PVC's
`harvesterhci.io/imageId` annotation says) starts blank and boots nothing.

cloud-init (NoCloud, the datasource KubeVirt's `cloudInitNoCloud`/`cloudInitConfigDrive` volumes feed): the
user data is the volume's `userData`, `userDataBase64`, or the Secret of `secretRef` (key `userdata`, else
`userData`); only a `#cloud-config` document is acted on (a script or a MIME multipart is not run here). Its
per-instance modules run once per instance-id (KubeVirt's NoCloud meta-data `instance-id` is the VMI's
`<name>.<namespace>`; a restarted VM keeps it, so cloud-init does not run again and later user-data
changes are not applied): `users` (absent: `[default]`; `default` is the image's default user, given
`ssh_authorized_keys` at the top level, `password` and `sudo: ALL=(ALL) NOPASSWD:ALL`), each with `name`,
`ssh_authorized_keys`, `sudo` (a rule, a list of rules, or false), `groups`, `shell`, `gecos`, `uid`,
`lock_passwd` (default true), `plain_text_passwd`/`passwd`; `password`, `chpasswd` (`list` or `users`,
type text), `ssh_pwauth` (PasswordAuthentication), `hostname`/`fqdn` (else the meta-data `local-hostname`,
KubeVirt's `spec.hostname` or the VMI's name), `write_files` (`path`, `content`, `encoding` b64,
`permissions`, `owner`, `append`), `disable_root` (default true: root gets no keys). The host key (ed25519,
`/etc/ssh/ssh_host_ed25519_key`) is generated then too: it lives on the disk, so it is the VM's for its life.
Not modelled: `runcmd`, `bootcmd`, `packages`, other modules; hashed passwords (`$6$...`) never match.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .guest_disk import ROOT_UID, GuestFiles

log = logging.getLogger(__name__)
Obj = dict[str, Any]

OS_TYPE_LABEL = "harvesterhci.io/os-type"
CLOUD_CFG = "/etc/cloud/cloud.cfg"
INSTANCE_ID_FILE = "/var/lib/cloud/data/instance-id"
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key"
SSHD_CLOUD_INIT_CONF = "/etc/ssh/sshd_config.d/50-cloud-init.conf"
SUDOERS_CLOUD_INIT = "/etc/sudoers.d/90-cloud-init-users"
FIRST_UID = 1000


@dataclass(frozen=True)
class OsProfile:
    os_id: str
    pretty_name: str
    version_id: str
    default_user: str
    admin_group: str               # the group sudoers lets in with a password ("%sudo" / "%wheel")


PROFILES = {
    "ubuntu": OsProfile("ubuntu", "Ubuntu 22.04.5 LTS", "22.04", "ubuntu", "sudo"),
    "debian": OsProfile("debian", "Debian GNU/Linux 12 (bookworm)", "12", "debian", "sudo"),
    "fedora": OsProfile("fedora", "Fedora Linux 40 (Cloud Edition)", "40", "fedora", "wheel"),
    "centos": OsProfile("centos", "CentOS Stream 9", "9", "cloud-user", "wheel"),
    "rocky": OsProfile("rocky", "Rocky Linux 9.4 (Blue Onyx)", "9.4", "rocky", "wheel"),
    "almalinux": OsProfile("almalinux", "AlmaLinux 9.4 (Seafoam Ocelot)", "9.4", "almalinux", "wheel"),
    "redhat": OsProfile("rhel", "Red Hat Enterprise Linux 9.4 (Plow)", "9.4", "cloud-user", "wheel"),
    "opensuse": OsProfile("opensuse-leap", "openSUSE Leap 15.6", "15.6", "opensuse", "wheel"),
    "sles": OsProfile("sles", "SUSE Linux Enterprise Server 15 SP6", "15.6", "sles", "wheel"),
}
DEFAULT_PROFILE = PROFILES["ubuntu"]
_HINTS = (("ubuntu", "ubuntu"), ("jammy", "ubuntu"), ("focal", "ubuntu"), ("noble", "ubuntu"),
          ("debian", "debian"), ("bookworm", "debian"), ("fedora", "fedora"), ("centos", "centos"),
          ("rocky", "rocky"), ("alma", "almalinux"), ("rhel", "redhat"), ("opensuse", "opensuse"),
          ("leap", "opensuse"), ("sles", "sles"), ("sle-", "sles"))


def profile_of(image: Obj | None) -> OsProfile:
    """The OS a VirtualMachineImage holds: its os-type label, else a name in its display name or URL."""
    if image is None:
        return DEFAULT_PROFILE
    os_type = str((image["metadata"].get("labels") or {}).get(OS_TYPE_LABEL) or "").lower()
    if os_type in PROFILES:
        return PROFILES[os_type]
    spec = image.get("spec") or {}
    text = f"{spec.get('displayName', '')} {spec.get('url', '')} {image['metadata']['name']}".lower()
    return next((PROFILES[os_id] for hint, os_id in _HINTS if hint in text), DEFAULT_PROFILE)


def base_files(profile: OsProfile) -> GuestFiles:
    """The root filesystem of a fresh cloud image of that OS (before cloud-init ran)."""
    files = GuestFiles()
    for path, mode in (("/bin", 0o755), ("/usr", 0o755), ("/usr/bin", 0o755), ("/etc", 0o755),
                       ("/etc/ssh", 0o755), ("/etc/ssh/sshd_config.d", 0o755), ("/etc/sudoers.d", 0o750),
                       ("/etc/cloud", 0o755), ("/home", 0o755), ("/root", 0o700), ("/tmp", 0o1777),
                       ("/var", 0o755), ("/var/lib", 0o755), ("/var/lib/cloud", 0o755),
                       ("/var/lib/cloud/data", 0o755), ("/var/lib/cloud/instance", 0o755), ("/var/log", 0o755)):
        files.mkdir(path, mode=mode)
    text = {
        "/etc/os-release": f'NAME="{profile.pretty_name.split(" ")[0]}"\nID={profile.os_id}\n'
                           f'VERSION_ID="{profile.version_id}"\nPRETTY_NAME="{profile.pretty_name}"\n',
        "/etc/hostname": "localhost\n",
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
        "/etc/group": f"root:x:0:\nadm:x:4:\nshadow:x:42:\nusers:x:100:\n{profile.admin_group}:x:27:\n",
        "/etc/sudoers": f"Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n%{profile.admin_group}\tALL=(ALL:ALL) ALL\n"
                        "@includedir /etc/sudoers.d\n",
        "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n"
                                "UsePAM yes\n",
        CLOUD_CFG: yaml.safe_dump({"disable_root": True, "system_info": {"default_user": {
            "name": profile.default_user, "lock_passwd": True, "gecos": profile.default_user.capitalize(),
            "groups": ["adm", profile.admin_group], "sudo": ["ALL=(ALL) NOPASSWD:ALL"], "shell": "/bin/bash"}}},
            sort_keys=False),
    }
    for path, content in text.items():
        files.write(path, content.encode(), mode=0o644)
    files.chown("/etc/sudoers", ROOT_UID, ROOT_UID, 0o440)
    files.write("/etc/shadow", b"root:*:19700:0:99999:7:::\n", mode=0o640, gid=42)
    return files


# --- passwords ------------------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    """The simulator's own crypt-like format (stdlib only): `$sim-sha256$<salt>$<hex>`."""
    salt = secrets.token_hex(8)
    return f"$sim-sha256${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def password_matches(stored: str, password: str) -> bool:
    if not stored.startswith("$sim-sha256$"):
        return False                  # locked ("!...", "*") or a hash this simulator cannot check
    _, _, salt, digest = stored.split("$", 3)
    return hmac.compare_digest(hashlib.sha256((salt + password).encode()).hexdigest(), digest)


# --- users as the guest knows them ------------------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def _text(files: GuestFiles, path: str) -> str:
    entry = files.entries.get(path)
    return entry.data.decode(errors="replace") if entry is not None and entry.kind == "file" else ""


def users(files: GuestFiles) -> dict[str, User]:
    found = {}
    for line in _text(files, "/etc/passwd").splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            found[parts[0]] = User(parts[0], int(parts[2]), int(parts[3]), parts[5], parts[6])
    return found


def user_by_uid(files: GuestFiles, uid: int) -> User | None:
    return next((u for u in users(files).values() if u.uid == uid), None)


def groups_of(files: GuestFiles, user: User) -> set[int]:
    gids = {user.gid}
    for line in _text(files, "/etc/group").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and user.name in parts[3].split(","):
            gids.add(int(parts[2]))
    return gids


def group_names(files: GuestFiles) -> dict[int, str]:
    names = {}
    for line in _text(files, "/etc/group").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            names[int(parts[2])] = parts[0]
    return names


def shadow_entry(files: GuestFiles, name: str) -> str:
    for line in _text(files, "/etc/shadow").splitlines():
        parts = line.split(":")
        if parts[0] == name and len(parts) > 1:
            return parts[1]
    return "*"


def authorized_keys(files: GuestFiles, user: User) -> list[str]:
    """`~/.ssh/authorized_keys`: "type base64" of each key line (options before the type are skipped)."""
    keys = []
    for line in _text(files, f"{user.home}/.ssh/authorized_keys").splitlines():
        words = line.strip().split()
        if not words or words[0].startswith("#"):
            continue
        for index, word in enumerate(words[:-1]):
            if word.startswith(("ssh-", "ecdsa-", "sk-")):
                keys.append(f"{word} {words[index + 1]}")
                break
    return keys


def sudo_rules(files: GuestFiles, user: User) -> list[str]:
    """The sudoers rules that apply to the user (its own and its groups'), from /etc/sudoers and sudoers.d."""
    texts = [_text(files, "/etc/sudoers")]
    texts += [_text(files, f"/etc/sudoers.d/{name}") for name in files.children("/etc/sudoers.d")
              if "." not in name and not name.endswith("~")] if "/etc/sudoers.d" in files.entries else []
    names = group_names(files)
    mine = {user.name} | {f"%{names[g]}" for g in groups_of(files, user) if g in names}
    rules = []
    for text in texts:
        for line in text.splitlines():
            words = line.split(None, 1)
            if len(words) == 2 and not line.startswith(("#", "Defaults", "@")) and words[0] in mine:
                rules.append(words[1].strip())
    return rules


def password_authentication(files: GuestFiles) -> bool:
    for path in (SSHD_CLOUD_INIT_CONF, "/etc/ssh/sshd_config"):
        for line in _text(files, path).splitlines():
            words = line.split()
            if len(words) == 2 and words[0].lower() == "passwordauthentication":
                return words[1].lower() == "yes"
    return False


def host_key_pem(files: GuestFiles) -> str:
    return _text(files, HOST_KEY_FILE)


# --- cloud-init -----------------------------------------------------------------------------------------------
def user_data_of(volumes: list[Obj], secret_data: dict[str, dict[str, str]]) -> str:
    """The user data of the VMI's cloud-init volume (`secret_data`: the Secrets it may name, by name)."""
    for volume in volumes:
        source = volume.get("cloudInitNoCloud") or volume.get("cloudInitConfigDrive")
        if source is None:
            continue
        if source.get("userData"):
            return str(source["userData"])
        if source.get("userDataBase64"):
            try:
                return base64.b64decode(str(source["userDataBase64"])).decode(errors="replace")
            except ValueError:
                return ""
        ref = source.get("secretRef") or source.get("userDataSecretRef") or {}
        data = secret_data.get(str(ref.get("name") or ""), {})
        for key in ("userdata", "userData"):
            if key in data:
                try:
                    return base64.b64decode(data[key]).decode(errors="replace")
                except ValueError:
                    return ""
        return ""
    return ""


def secret_names(volumes: list[Obj]) -> list[str]:
    names = []
    for volume in volumes:
        source = volume.get("cloudInitNoCloud") or volume.get("cloudInitConfigDrive") or {}
        ref = source.get("secretRef") or source.get("userDataSecretRef") or {}
        if ref.get("name"):
            names.append(str(ref["name"]))
    return names


def _as_list(value: Any) -> list[str]:
    """A cloud-config list that may be written as one string."""
    if value is None or value is False:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_cloud_config(text: str) -> Obj:
    if not text.lstrip().startswith("#cloud-config"):
        if text.strip():
            log.info("cloud-init: user data is not #cloud-config; not run by the simulated guest")
        return {}
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        log.warning("cloud-init: user data is not valid YAML: %s", exc)
        return {}
    return config if isinstance(config, dict) else {}


class CloudInit:
    """cloud-init's per-instance modules on one filesystem (as root)."""

    def __init__(self, files: GuestFiles, config: Obj, instance_id: str, local_hostname: str) -> None:
        self.files, self.config = files, config
        self.instance_id, self.local_hostname = instance_id, local_hostname
        self.sudo_lines: list[str] = []

    @staticmethod
    def needed(files: GuestFiles, instance_id: str) -> bool:
        return _text(files, INSTANCE_ID_FILE).strip() != instance_id

    def run(self) -> None:
        config = self.config
        cloud_cfg = yaml.safe_load(_text(self.files, CLOUD_CFG) or "{}") or {}
        default = dict(((cloud_cfg.get("system_info") or {}).get("default_user") or {}))
        entries = config.get("users")
        if entries is None:
            entries = ["default"]
        elif isinstance(entries, (str, dict)):
            entries = [entries]
        default_name = ""
        for entry in entries:
            if entry == "default" or (isinstance(entry, dict) and entry.get("name") == "default"):
                if not default:
                    continue
                spec = dict(default)
                spec["ssh_authorized_keys"] = _as_list(spec.get("ssh_authorized_keys")) + \
                    _as_list(config.get("ssh_authorized_keys"))
                default_name = str(spec["name"])
                self._add_user(spec)
            elif isinstance(entry, str):
                for name in entry.split(","):
                    if name.strip():
                        self._add_user({"name": name.strip()})
            elif isinstance(entry, dict) and entry.get("name"):
                self._add_user(entry)
        if not config.get("disable_root", cloud_cfg.get("disable_root", True)):
            self._keys(users(self.files)["root"], _as_list(config.get("ssh_authorized_keys")))
        self._passwords(default_name)
        if "ssh_pwauth" in config:
            value = config["ssh_pwauth"]
            enabled = value is True or str(value).lower() in ("true", "yes", "1")
            self._write(SSHD_CLOUD_INIT_CONF, f"PasswordAuthentication {'yes' if enabled else 'no'}\n", 0o600)
        hostname = str(config.get("hostname") or str(config.get("fqdn") or "").split(".")[0] or self.local_hostname)
        self._write("/etc/hostname", hostname + "\n", 0o644)
        if self.sudo_lines:
            self._write(SUDOERS_CLOUD_INIT, "# Created by cloud-init v. 24.1 (simulated)\n\n"
                        + "".join(self.sudo_lines), 0o440)
        self._write_files(config.get("write_files") or [])
        self._host_key()
        self._write(INSTANCE_ID_FILE, self.instance_id + "\n", 0o644)
        self._write(BOOT_FINISHED, "cloud-init boot finished (simulated)\n", 0o644)

    # --- modules ----------------------------------------------------------------------------------
    def _write(self, path: str, text: str, mode: int, uid: int = ROOT_UID, gid: int = ROOT_UID,
               append: bool = False) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in self.files.entries:
            self.files.mkdir(parent, parents=True)
        self.files.write(path, text.encode(), append=append)
        self.files.chown(path, uid, gid, mode)

    def _add_user(self, spec: Obj) -> None:
        name = str(spec["name"])
        known = users(self.files)
        if name not in known:
            taken = {u.uid for u in known.values()}
            uid = int(spec["uid"]) if str(spec.get("uid", "")).isdigit() else \
                next(n for n in range(FIRST_UID, FIRST_UID + 60000) if n not in taken)
            home = str(spec.get("homedir") or f"/home/{name}")
            shell = str(spec.get("shell") or "/bin/sh")
            gecos = str(spec.get("gecos") or "")
            self._write("/etc/passwd", f"{name}:x:{uid}:{uid}:{gecos}:{home}:{shell}\n", 0o644, append=True)
            self._write("/etc/group", f"{name}:x:{uid}:\n", 0o644, append=True)
            self._write("/etc/shadow", f"{name}:!:19700:0:99999:7:::\n", 0o640, gid=42, append=True)
            if home not in self.files.entries:
                self.files.mkdir(home, parents=True)
            self.files.chown(home, uid, uid, 0o750)
            known = users(self.files)
        user = known[name]
        groups = spec.get("groups") or []
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",") if g.strip()]
        for group in groups:
            self._join(str(group), name)
        rules = _as_list(spec.get("sudo"))
        if rules:
            self.sudo_lines.append(f"# User rules for {name}\n" + "".join(f"{name} {rule}\n" for rule in rules) + "\n")
        self._keys(user, _as_list(spec.get("ssh_authorized_keys")))
        password = spec.get("plain_text_passwd")
        if password:
            self._set_password(name, str(password), unlock=spec.get("lock_passwd") is False)
        elif spec.get("passwd") or spec.get("hashed_passwd"):
            self._set_shadow(name, str(spec.get("hashed_passwd") or spec.get("passwd")),
                             unlock=spec.get("lock_passwd") is False)

    def _join(self, group: str, name: str) -> None:
        lines = _text(self.files, "/etc/group").splitlines()
        found = False
        for index, line in enumerate(lines):
            parts = line.split(":")
            if parts[0] == group and len(parts) >= 4:
                members = [m for m in parts[3].split(",") if m]
                if name not in members:
                    members.append(name)
                lines[index] = ":".join(parts[:3] + [",".join(members)])
                found = True
        if not found:
            taken = {int(p.split(":")[2]) for p in lines if p.count(":") >= 3 and p.split(":")[2].isdigit()}
            gid = next(n for n in range(900, 1000) if n not in taken)
            lines.append(f"{group}:x:{gid}:{name}")
        self._write("/etc/group", "\n".join(lines) + "\n", 0o644)

    def _keys(self, user: User, keys: list[str]) -> None:
        if not keys:
            return
        ssh = f"{user.home}/.ssh"
        if ssh not in self.files.entries:
            self.files.mkdir(ssh, parents=True)
        self.files.chown(ssh, user.uid, user.gid, 0o700)
        self._write(f"{ssh}/authorized_keys", "".join(f"{k.strip()}\n" for k in keys), 0o600,
                    uid=user.uid, gid=user.gid, append=True)

    def _set_shadow(self, name: str, value: str, unlock: bool) -> None:
        lines = _text(self.files, "/etc/shadow").splitlines()
        for index, line in enumerate(lines):
            parts = line.split(":")
            if parts[0] == name:
                parts[1] = value if unlock else "!" + value
                lines[index] = ":".join(parts)
        self._write("/etc/shadow", "\n".join(lines) + "\n", 0o640, gid=42)

    def _set_password(self, name: str, password: str, unlock: bool = True) -> None:
        if password.upper() == "RANDOM":
            password = secrets.token_urlsafe(16)
        self._set_shadow(name, hash_password(password), unlock)

    def _passwords(self, default_name: str) -> None:
        config = self.config
        known = users(self.files)
        if config.get("password") and default_name:
            self._set_password(default_name, str(config["password"]))
        chpasswd = config.get("chpasswd") or {}
        if not isinstance(chpasswd, dict):
            return
        listed = chpasswd.get("list") or []
        if isinstance(listed, str):
            listed = listed.splitlines()
        for line in listed:
            name, _, password = str(line).strip().partition(":")
            if name in known and password:
                self._set_password(name, password)
        for entry in chpasswd.get("users") or []:
            if isinstance(entry, dict) and entry.get("name") in known and entry.get("password"):
                if str(entry.get("type", "text")) in ("text", "RANDOM") or entry["password"] == "RANDOM":
                    self._set_password(str(entry["name"]), str(entry["password"]))
                else:
                    self._set_shadow(str(entry["name"]), str(entry["password"]), True)

    def _write_files(self, entries: list[Any]) -> None:
        known = users(self.files)
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("path"):
                continue
            content = entry.get("content") or ""
            data = str(content).encode()
            if str(entry.get("encoding", "")).lower() in ("b64", "base64"):
                try:
                    data = base64.b64decode(str(content))
                except ValueError:
                    continue
            owner = str(entry.get("owner") or "root:root").split(":")[0]
            user = known.get(owner) or known["root"]
            try:
                mode = int(str(entry.get("permissions") or "0644"), 8)
            except ValueError:
                mode = 0o644
            path = str(entry["path"])
            parent = path.rsplit("/", 1)[0] or "/"
            if parent not in self.files.entries:
                self.files.mkdir(parent, parents=True)
            self.files.write(path, data, append=bool(entry.get("append")))
            self.files.chown(path, user.uid, user.gid, mode)

    def _host_key(self) -> None:
        if HOST_KEY_FILE in self.files.entries:
            return
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH).decode()
        self._write(HOST_KEY_FILE, pem, 0o600)
        self._write(HOST_KEY_FILE + ".pub", f"{public} root@{self.local_hostname}\n", 0o644)
