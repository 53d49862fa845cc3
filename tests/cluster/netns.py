"""Hosts on one machine: one network namespace per pod, a veth pair into a bridge, names in /etc/netns.

Every host gets its own address on a private /24 chosen at start (10.231.N.0/24 with N unused here);
the bridge in the root namespace holds .1, and extra root-namespace addresses (.200 upwards) serve as
Service virtual IPs. ``ip netns exec NAME`` bind-mounts ``/etc/netns/NAME/hosts`` over ``/etc/hosts``:
that is how Service names resolve inside a pod. ``resolv.conf`` points at 127.0.0.1 so that a name not in
the hosts file fails at once instead of waiting on a DNS server the namespace cannot reach.

Names carry the owning process id (``dcl<pid>-...``): :func:`remove_stale` deletes what a killed run left
behind, and :meth:`Network.destroy` removes everything this run created (called on failure too).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from typing_extensions import Self

PREFIX = "dcl"
NETNS_ETC = Path("/etc/netns")


class NetworkError(RuntimeError):
    """An ``ip`` command failed; the message holds the command and its error."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces, bridges and hosts files of runs whose process is gone; return what was removed."""
    removed = []
    pattern = re.compile(rf"^{PREFIX}(\d+)[-b]")
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").stdout.splitlines()]
    etc = [p.name for p in NETNS_ETC.iterdir()] if NETNS_ETC.is_dir() else []
    for name in sorted(set(names) | set(links) | set(etc)):
        m = pattern.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        if name in names:
            ip("netns", "del", name, check=False)
        if name in links:
            ip("link", "del", name, check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        removed.append(name)
    for folder in Path("/var/tmp").glob(f"{PREFIX}*-*"):  # run folders (tests/cluster/test_cluster.py)
        m = re.match(rf"^{PREFIX}(\d+)-", folder.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = ip("-4", "-o", "addr").stdout + ip("-4", "route").stdout
    for n in range(10, 250):
        net = ipaddress.IPv4Network(f"10.231.{n}.0/24")
        if f"10.231.{n}." not in used:
            return net
    raise NetworkError("no free 10.231.N.0/24 subnet on this machine")


@dataclass
class Host:
    """One network namespace with one address."""

    name: str  # logical name (pod name)
    netns: str
    address: str
    veth: str

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []


@dataclass
class Network:
    """The bridge, the hosts on it, and the names they resolve. Use as a context manager."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    subnet: ipaddress.IPv4Network | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    vips: list[str] = field(default_factory=list)
    _next: int = 2
    _next_vip: int = 200

    @property
    def bridge(self) -> str:
        return f"{self.tag}b"

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace: where the forwarders to the machine's servers listen."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def create(self) -> Network:
        remove_stale()
        self.subnet = self.subnet or _free_subnet()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        """A new namespace with the next free address, its loopback up, plugged into the bridge."""
        assert self.subnet is not None, "create() first"
        if name in self.hosts:
            raise NetworkError(f"host {name} exists")
        index = self._next
        if index >= 200:
            raise NetworkError("more than 198 hosts on one test network")
        self._next += 1
        netns = f"{self.tag}-{index}"
        veth = f"{self.tag}v{index}"
        address = str(self.subnet.network_address + index)
        ip("netns", "add", netns)
        host = Host(name=name, netns=netns, address=address, veth=veth)
        self.hosts[name] = host
        ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        ip("link", "set", f"{veth}p", "netns", netns)
        ip("-n", netns, "link", "set", f"{veth}p", "name", "eth0")
        ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("link", "set", veth, "master", self.bridge)
        ip("link", "set", veth, "up")
        etc = NETNS_ETC / netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{address} {name}\n")
        return host

    def add_vip(self) -> str:
        """One more root-namespace address on the bridge (a Service's virtual IP)."""
        assert self.subnet is not None
        address = str(self.subnet.network_address + self._next_vip)
        self._next_vip += 1
        ip("addr", "add", f"{address}/32", "dev", self.bridge)
        self.vips.append(address)
        return address

    def write_hosts(self, names: dict[str, list[str]]) -> None:
        """Give every host the same name table (name -> addresses; several addresses = several lines)."""
        lines = ["127.0.0.1 localhost"]
        for name, addresses in sorted(names.items()):
            lines += [f"{address} {name}" for address in addresses]
        for host in self.hosts.values():
            own = [f"{host.address} {host.name}"] if host.name not in names else []
            (NETNS_ETC / host.netns / "hosts").write_text("\n".join(lines + own) + "\n")

    def destroy(self) -> None:
        """Delete every namespace, link and file this network created (safe to call twice)."""
        for host in self.hosts.values():
            ip("netns", "del", host.netns, check=False)
            ip("link", "del", host.veth, check=False)
            shutil.rmtree(NETNS_ETC / host.netns, ignore_errors=True)
        self.hosts.clear()
        ip("link", "del", self.bridge, check=False)
        self.vips.clear()

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()
