"""One simulated USB bus, written two ways: a sysfs-like tree (what the agent reads) and a
umockdev device file (what libusb, lsusb and nut-scanner see under umockdev-run).

The bus holds one UPS (APC Back-UPS, 051d:0002) and N-1 other devices (keyboards, mice,
storage: models NUT does not know), spread over buses of at most 100 devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The fixture's APC device descriptor and its HID configuration descriptor; only the IDs differ per device.
_DESCRIPTORS = (
    "12011001000000081D05020006010102030109022200010100A032090400000103000000092110012101225A030705810308000A"
)
_OTHERS = [
    ("046d", "c52b", "Logitech", "USB Receiver"),
    ("0781", "5581", "SanDisk", "Ultra"),
    ("1a2c", "2124", "SEM", "USB Keyboard"),
]


@dataclass(frozen=True)
class Device:
    port: str
    busnum: int
    devnum: int
    vendorid: str
    productid: str
    manufacturer: str
    product: str
    serial: str


def devices(n: int) -> list[Device]:
    out = [Device("1-1", 1, 2, "051d", "0002", "American Power Conversion", "Back-UPS ES 700G", "3B1234X56789")]
    for i in range(1, n):
        bus, slot = i // 100 + 1, i % 100 + 1
        if bus == 1:
            slot += 1  # 1-1 is the UPS
        vid, pid, mfr, product = _OTHERS[i % len(_OTHERS)]
        out.append(Device(f"{bus}-{slot}", bus, slot + 1, vid, pid, mfr, product, f"SN{i:06d}"))
    return out


def write_sysfs(root: Path, bus: list[Device]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for d in bus:
        folder = root / d.port
        folder.mkdir()
        for name, value in (
            ("idVendor", d.vendorid),
            ("idProduct", d.productid),
            ("busnum", str(d.busnum)),
            ("devnum", str(d.devnum)),
            ("manufacturer", d.manufacturer),
            ("product", d.product),
            ("serial", d.serial),
        ):
            (folder / name).write_text(value + "\n")


def _descriptor(d: Device) -> str:
    vid, pid = bytes.fromhex(d.vendorid)[::-1].hex(), bytes.fromhex(d.productid)[::-1].hex()
    return (_DESCRIPTORS[:16] + vid + pid + _DESCRIPTORS[24:]).upper()


def write_umockdev(path: Path, bus: list[Device]) -> None:
    blocks = []
    for d in bus:
        desc = _descriptor(d)
        blocks.append(
            "\n".join(
                [
                    f"P: /devices/pci0000:00/0000:00:14.0/usb{d.busnum}/{d.port}",
                    f"N: bus/usb/{d.busnum:03d}/{d.devnum:03d}={desc}",
                    f"E: DEVNAME=/dev/bus/usb/{d.busnum:03d}/{d.devnum:03d}",
                    "E: DEVTYPE=usb_device",
                    "E: SUBSYSTEM=usb",
                    f"E: BUSNUM={d.busnum:03d}",
                    f"E: DEVNUM={d.devnum:03d}",
                    f"E: PRODUCT={int(d.vendorid, 16):x}/{int(d.productid, 16):x}/106",
                    f"A: idVendor={d.vendorid}\\n",
                    f"A: idProduct={d.productid}\\n",
                    "A: bcdDevice=0106\\n",
                    f"A: manufacturer={d.manufacturer}\\n",
                    f"A: product={d.product}\\n",
                    f"A: serial={d.serial}\\n",
                    f"A: busnum={d.busnum}\\n",
                    f"A: devnum={d.devnum}\\n",
                    "A: speed=1.5\\n",
                    "A: bConfigurationValue=1\\n",
                    "A: bNumConfigurations=1\\n",
                    f"H: descriptors={desc}",
                ]
            )
        )
    path.write_text("\n\n".join(blocks) + "\n")
