"""Enumerate USB devices through libusb (pyusb), with a fresh context every call.

Why a fresh context: pyusb's get_backend() caches one libusb context per process and
that context's device list only changes on udev events, which a container does not
get, so a long-running agent would never see a replug. Nothing is opened: string
descriptors (serial, product) come from sysfs where there is one.
"""

from __future__ import annotations

from reconcile.model import UsbDevice


class LibusbUnavailable(RuntimeError):
    pass


def scan() -> list[UsbDevice]:
    try:
        import usb.backend.libusb1 as libusb1
        import usb.core
    except ImportError as exc:  # pragma: no cover - pyusb is a dependency
        raise LibusbUnavailable(f"pyusb is not installed: {exc}") from None
    cached = libusb1.get_backend()
    if cached is None:
        raise LibusbUnavailable("libusb-1.0 is not installed")
    try:
        # _LibUSB(lib) runs libusb_init for a new context; it is freed with the object.
        # Private to pyusb (1.2 and 1.3 alike): if a release renames it, fall back to the
        # cached context, which still works where udev events arrive.
        backend = libusb1._LibUSB(libusb1._lib)
    except (AttributeError, TypeError):
        backend = cached
    devices = []
    for dev in usb.core.find(find_all=True, backend=backend):
        ports = getattr(dev, "port_numbers", None) or ()
        port = f"{dev.bus}-" + ".".join(str(p) for p in ports) if ports else f"{dev.bus}-0"
        devices.append(
            UsbDevice(
                port=port,
                vendorid=f"{dev.idVendor:04x}",
                productid=f"{dev.idProduct:04x}",
                busnum=int(dev.bus),
                devnum=int(dev.address),
            )
        )
    del backend
    return sorted(devices, key=lambda d: d.port)
