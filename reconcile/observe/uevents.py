"""The kernel's word that a device came, went or changed: uevents over netlink.

The kernel multicasts every uevent on NETLINK_KOBJECT_UEVENT, group 1 ("kernel"; udev
re-sends its own on group 2, which needs udevd, absent from our container). A process
in a container's own network namespace receives them when the container shares the
host's user namespace, as Docker's default does: no capability, no udev, no privileged
mode (checked with compose.yaml's cap_drop: [ALL], no-new-privileges, a read-only root).

A uevent only wakes the agent: the pass that follows scans sysfs and decides from what
it reads, never from the message (level-triggered). So a lost message costs at most one
periodic pass, and a forged one (only a root with CAP_NET_ADMIN could send one, and only
messages from the kernel, netlink port 0, are taken) costs one scan.

Why not pyudev: its kernel-source monitor needs libudev in the image and gives no say
over the receive buffer or the overflow (ENOBUFS), which is the one thing to get right.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

NETLINK_KOBJECT_UEVENT = 15  # linux/netlink.h
KERNEL_GROUP = 1  # the kernel's own multicast group (udev's is 2)
# Why 4 MiB: a hub with several devices replugged sends a few hundred messages of about
# 300 bytes at once. The kernel caps it at net.core.rmem_max (SO_RCVBUFFORCE would pass
# the cap, but needs CAP_NET_ADMIN, which the container does not have): an overflow then
# is reported (ENOBUFS) and answered with a full pass, so nothing is lost but time.
BUFFER = 4 << 20
MESSAGE_MAX = 8192  # the kernel's UEVENT_BUFFER_SIZE is 2048; a message never exceeds it


@dataclass(frozen=True)
class Uevent:
    action: str  # add, remove, change, bind, unbind, move, online, offline
    devpath: str  # under /sys, e.g. /devices/platform/.../usb1/1-1
    subsystem: str
    devtype: str  # usb_device, usb_interface; "" if the message has none


@dataclass(frozen=True)
class Drained:
    events: tuple[Uevent, ...]  # the ones of our subsystem, oldest first
    overflowed: bool  # the kernel dropped messages (ENOBUFS): some are missing


def parse(message: bytes) -> Uevent | None:
    """One kernel message: "ACTION@DEVPATH\\0KEY=VALUE\\0...". None if it is not one
    (udev's "libudev" messages, or anything malformed)."""
    head, _, rest = message.partition(b"\0")
    action, at, devpath = head.partition(b"@")
    if not at or not action or not devpath.startswith(b"/"):
        return None
    fields: dict[bytes, bytes] = {}
    for item in rest.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq:
            fields[key] = value
    # The header repeats ACTION and DEVPATH as fields; a message where they disagree is not the kernel's.
    if fields.get(b"ACTION", action) != action or fields.get(b"DEVPATH", devpath) != devpath:
        return None
    return Uevent(
        action=action.decode("ascii", "replace"),
        devpath=devpath.decode("utf-8", "replace"),
        subsystem=fields.get(b"SUBSYSTEM", b"").decode("ascii", "replace"),
        devtype=fields.get(b"DEVTYPE", b"").decode("ascii", "replace"),
    )


class Listener:
    """A non-blocking netlink socket on the kernel's uevent group: fileno() for select(),
    drain() for what has come. open() raises OSError where it cannot be had (a kernel
    without it, a sandbox that forbids netlink)."""

    def __init__(self, sock: socket.socket, subsystem: str) -> None:
        self.sock = sock
        self.subsystem = subsystem

    @classmethod
    def open(cls, subsystem: str, buffer: int | None = None) -> Listener:
        buffer = BUFFER if buffer is None else buffer
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT
        )
        try:
            # Why again, after SOCK_NONBLOCK: a green-thread library's socket (gevent's, which
            # pyinfra patches in) keeps its own timeout and waits for data on EAGAIN unless
            # told; setblocking(False) tells it, so drain() can never block.
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
            sock.bind((0, KERNEL_GROUP))  # port 0: the kernel picks our port
        except OSError:
            sock.close()
            raise
        return cls(sock, subsystem)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> Drained:
        """Everything queued now, without blocking."""
        events: list[Uevent] = []
        overflowed = False
        while True:
            try:
                message, (sender, _group) = self.sock.recvfrom(MESSAGE_MAX, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the queue overflowed and messages were dropped. The socket is
                # still good and the next recv goes on with what is queued after them.
                if exc.errno != errno.ENOBUFS:
                    raise
                overflowed = True
                continue
            if sender != 0:  # only the kernel (netlink port 0) speaks for devices
                continue
            event = parse(message)
            if event is not None and event.subsystem == self.subsystem:
                events.append(event)
        return Drained(tuple(events), overflowed)

    def close(self) -> None:
        self.sock.close()
