"""An example inventory: Raspberry Pis reached over SSH, in group `pis`, with `canary`
the one that gets a change first (docs/fleet.md). Every host data key has a default
(fleet/data.py); group_data/ and the per-host dicts below only override.

Host data keys: ups_name, scan_interval, settle_time, tz, debug, simulate, nut_port,
nut_listen, image, image_source (load | build | pull), install_docker, project_dir,
monuser_password, admin_password (better: NUT_MONUSER_PASSWORD / NUT_ADMIN_PASSWORD in the
controller's environment), devices (the agent's [[device]] rules, as dicts), host_shutdown
(default true: the Pi's own upsmon halts it), host_shutdown_cmd, host_password, ups_off_delay,
fsd_clear_after, simulate_cycle, gate_timeout, synology_compat, metrics_port, and the agent's
outputs: notify_urls (Apprise URLs), notify_events, mqtt_url (both URLs reach the Pi as
Docker secrets only).

How every Pi is doing: `python -m fleet.status inventory/hosts.py [--json]` (docs/fleet.md).

Other machines on a Pi's UPS go in group nut_clients (docs/fleet.md), e.g.:

    nut_clients = [
        ("nas.lan", {"ups_server": "pi-rack.lan", "shutdown_after": 300, "ssh_user": "admin", "_sudo": True}),
    ]
"""

canary = [
    ("pi-rack.lan", {"ssh_user": "pi", "_sudo": True}),
]

pis = [
    *canary,
    ("pi-shop.lan", {"ssh_user": "pi", "_sudo": True, "tz": "Europe/Berlin"}),
    (
        "pi-cabin.lan",
        {
            "ssh_user": "pi",
            "_sudo": True,
            "devices": [{"match": {"vendorid": "0764", "productid": "0501"}, "name": "cabin-ups"}],
        },
    ),
]
