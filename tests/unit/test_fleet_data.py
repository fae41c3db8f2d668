"""The rollout's host data and what it renders: pure, no host needed."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fleet import data, render
from fleet.config import HostConfig
from fleet.image import ARCHES, UNSUPPORTED, ImageError, buildx_args, platform_of, platform_tag
from testbed import REPO


def load(environ: dict[str, str] | None = None, **given: Any) -> HostConfig:
    return data.load("pi1", lambda key: given.get(key, data.DEFAULTS[key]), environ or {})


def test_every_key_has_a_default_so_an_inventory_of_names_alone_works() -> None:
    config = load()
    assert (config.ups_name, config.nut_port, config.image_source, config.project_dir) == (
        "my-ups",
        3493,
        "load",
        "/opt/ups-nut-smart",
    )
    # None given: the agent generates them on the Pi; only the host upsmon's is derived here.
    assert set(config.secrets) == {"nut_host_password"}
    assert config.host_shutdown and config.host_shutdown_cmd == "/sbin/shutdown -h +0"
    assert set(data.DEFAULTS) == {
        "ups_name", "scan_interval", "settle_time", "tz", "debug", "simulate", "simulate_cycle", "nut_port",
        "nut_listen", "image", "image_source", "install_docker", "project_dir", "monuser_password", "admin_password",
        "devices", "host_ups", "host_minsupplies", "host_halt_seconds",
        "host_shutdown", "host_shutdown_cmd", "host_password", "ups_off_delay", "fsd_clear_after",
        "synology_compat", "gate_timeout", "metrics_port", "metrics_listen", "notify_urls", "notify_events",
        "mqtt_url", "uevents", "rescan_interval", "settle_min", "nut_maxconn",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"ups_name": "my ups"}, "ups_name"),
        ({"ups_name": "ups@home"}, "ups_name"),
        ({"nut_port": 0}, "nut_port"),
        ({"nut_port": 70000}, "nut_port"),
        ({"nut_port": True}, "nut_port"),
        ({"nut_port": "http"}, "nut_port"),
        ({"image_source": "scp"}, "image_source"),
        ({"scan_interval": "fast"}, "scan_interval"),
        ({"scan_interval": "1e3"}, "scan_interval"),
        ({"scan_interval": [2]}, "scan_interval"),
        ({"settle_time": -1}, "settle_time"),
        ({"uevents": "no"}, "uevents"),
        ({"rescan_interval": "0"}, "rescan_interval"),
        ({"settle_min": "soon"}, "settle_min"),
        ({"tz": "Europe/../../etc/passwd"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"nut_listen": "999.999.999.999"}, "nut_listen"),
        ({"image": "Not An Image"}, "image"),
        ({"project_dir": "relative/dir"}, "project_dir"),
        ({"project_dir": "/opt/../etc"}, "project_dir"),
        ({"debug": "yes"}, "debug"),
        ({"install_docker": 1}, "install_docker"),
        ({"devices": {"match": {}}}, "devices"),
        ({"image_source": "pull", "image": "registry.lan/ups-nut-smart:latest"}, "image"),
        ({"image_source": "pull", "image": "registry.lan/ups-nut-smart"}, "image"),
        ({"devices": [{"match": {"vendorid": 1309}}]}, "devices"),
        ({"devices": [{"match": {"vendorid": "051d"}, "options": {"desc": "x"}, "desc": "y"}]}, "devices"),
        ({"synology_compat": "yes"}, "synology_compat"),
        ({"gate_timeout": 5}, "gate_timeout"),
        ({"metrics_port": 0}, "metrics_port"),
        ({"metrics_port": 3493}, "metrics_port"),
        ({"metrics_listen": "lan", "metrics_port": 9199}, "metrics_listen"),
        ({"synology_compat": True}, "synology_compat"),  # ups_name is still my-ups
        ({"notify_urls": 5}, "notify_urls"),
        ({"notify_urls": [{"url": "ntfy://t"}]}, "notify_urls"),
        ({"notify_events": "default,-nonsense"}, "notify_events"),
        ({"notify_events": ["default"]}, "notify_events"),
        ({"mqtt_url": 1883}, "mqtt_url"),
        ({"synology_compat": True, "ups_name": "ups", "monuser_password": "given-pass-1"}, "synology_compat"),
    ],
)
def test_bad_data_names_the_host_and_the_key(given: dict[str, Any], key: str) -> None:
    with pytest.raises(data.DataError) as err:
        load(**given)
    assert err.value.key == key and str(err.value).startswith(f"host pi1: data {key}: ")


def test_a_numeric_usb_id_says_how_to_write_it() -> None:
    with pytest.raises(data.DataError, match='write the ID as a string: "051d"'):
        load(devices=[{"match": {"vendorid": 0x051D}}])


def test_passwords_from_data_or_the_controllers_environment_never_in_a_message() -> None:
    given = load(monuser_password="from-data-pass", host_shutdown=False).secrets
    assert given == {"nut_monuser_password": "from-data-pass"}
    env = {"NUT_MONUSER_PASSWORD": "from-env-pass1", "NUT_ADMIN_PASSWORD": "admin-env-pass"}
    from_env = load(env, host_shutdown=False).secrets
    assert from_env == {"nut_monuser_password": "from-env-pass1", "nut_admin_password": "admin-env-pass"}
    with pytest.raises(data.DataError) as err:
        load(monuser_password="has=equals-sign")
    assert "equals" not in str(err.value) and err.value.key == "monuser_password"
    assert "from-data-pass" not in repr(load(monuser_password="from-data-pass"))


def test_what_lands_on_a_host() -> None:
    config = load(
        {"NUT_MONUSER_PASSWORD": "secret-pass-1"},
        nut_port=3494,
        nut_listen="192.168.1.10",
        scan_interval=0.5,
        tz="Europe/Berlin",
        simulate=True,
        devices=[{"match": {"vendorid": "051D", "serial": 'A"B'}, "name": "rack", "powers_host": False}],
    )
    files = render.files(config)
    assert "secret-pass-1" not in "".join(files.values())
    assert '- "192.168.1.10:3494:3494"' in files["compose.yaml"]
    assert 'file: "./secrets/nut_monuser_password"' in files["compose.yaml"]
    env = dict(line.split("=", 1) for line in files[".env"].splitlines() if line and not line.startswith("#"))
    assert env == {
        "UPS_NAME": "my-ups",
        "SCAN_INTERVAL": "0.5",
        "SETTLE_TIME": "2",
        "TZ": "Europe/Berlin",
        "DEBUG": "0",
        "SIMULATE": "1",
        "SIMULATE_CYCLE": "120",
    }
    toml = tomllib.loads(files["config.toml"])
    assert toml["upsd"]["listen"] == ["0.0.0.0:3494"]
    assert toml["device"] == [{"match": {"vendorid": "051D", "serial": 'A"B'}, "name": "rack", "powers_host": False}]
    for key in ("cap_drop: [ALL]", "no-new-privileges:true", "read_only: true", '"c 189:* rmw"'):
        assert key in files["compose.yaml"]


def test_the_fleet_compose_file_keeps_the_projects_least_privilege() -> None:
    """compose.yaml (a Pi by hand) and the fleet's template give the same privileges."""
    shipped = (REPO / "compose.yaml").read_text()
    fleet = render.compose(load())
    for line in (
        "cap_drop: [ALL]",
        "cap_add: [CHOWN, SETUID, SETGID, KILL]",
        'security_opt: ["no-new-privileges:true"]',
        "read_only: true",
        "- /opt/nut/etc:mode=0755",
        "- /var/run/nut:mode=0770",
        "- /dev/bus/usb:/dev/bus/usb",
        "- /run/udev:/run/udev:ro",
        '- "c 189:* rmw"',
        "restart: unless-stopped",
    ):
        assert line in shipped and line in fleet, line


def test_toml_and_yaml_quoting_round_trip() -> None:
    for value in ['a"b', "back\\slash", "new\nline", "tab\there", "ünï", ""]:
        assert tomllib.loads(f"x = {render.toml_value(value)}")["x"] == value
        assert json.loads(json.dumps(value)) == value
    with pytest.raises(ValueError):
        render.env_value("a b")
    with pytest.raises(ValueError):
        render.env_value("$(reboot)")


def test_image_tags_and_architectures() -> None:
    assert platform_tag("ups-nut-smart:latest", "arm64") == "ups-nut-smart:latest-arm64"
    assert platform_tag("registry.lan:5000/ups/nut", "arm64") == "registry.lan:5000/ups/nut:latest-arm64"
    assert platform_tag("ups-nut-smart:latest", "arm/v7") == "ups-nut-smart:latest-armv7"
    assert (ARCHES["aarch64"], ARCHES["x86_64"]) == ("arm64", "amd64")
    # 32-bit Raspberry Pi OS on a Pi 2, 3 or Zero 2 W; armv8l is a 32-bit kernel on an ARMv8 CPU
    assert ARCHES["armv7l"] == ARCHES["armv8l"] == "arm/v7"
    # an ARMv6 Pi has no image, and says why rather than getting one that cannot run
    assert "armv6l" not in ARCHES and "ARMv6" in UNSUPPORTED["armv6l"]
    # what `docker image inspect` reports, as a platform
    assert platform_of("arm", "v7") == "arm/v7"
    assert platform_of("arm64", "v8") == platform_of("arm64") == "arm64"
    assert platform_of("amd64") == "amd64"


def test_buildx_args_per_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_BUILDX_ARGS", "--build-arg NUT_SOURCE=debian")
    monkeypatch.setenv("FLEET_BUILDX_ARGS_ARMV7", "--build-arg BASE_IMAGE=local/bookworm-slim:armhf")
    assert buildx_args("arm/v7") == [
        "--build-arg",
        "NUT_SOURCE=debian",
        "--build-arg",
        "BASE_IMAGE=local/bookworm-slim:armhf",
    ]
    assert buildx_args("arm64") == ["--build-arg", "NUT_SOURCE=debian"]
    monkeypatch.setenv("FLEET_BUILDX_ARGS_ARM64", "--build-arg 'unclosed")
    with pytest.raises(ImageError, match="FLEET_BUILDX_ARGS"):
        buildx_args("arm64")


def test_a_fleet_template_that_writes_a_raw_value_fails_instead_of_writing_it() -> None:
    """The agent's finalize guard, in the fleet's renderer: only a filtered value is written."""
    config = load()
    env = render._env()
    assert env.from_string("image: {{ c.image | yaml }}").render(c=config) == 'image: "ups-nut-smart:latest"'
    with pytest.raises(ValueError, match="without a filter"):
        env.from_string("image: {{ c.image }}").render(c=config)


def test_the_host_upsmon_password_is_derived_stable_per_host_and_never_shown() -> None:
    one, again = load().host_password, load().host_password
    assert one == again and one is not None and len(one) == 32 and one.isalnum()
    other = data.load("pi9", lambda key: data.DEFAULTS[key], {}).host_password
    assert other != one  # each host its own
    assert one not in repr(load())
    assert load(host_password="given-password1").host_password == "given-password1"


def test_the_host_upsmon_files_quote_what_they_write_and_the_agent_accepts_its_toml() -> None:
    config = load(host_shutdown_cmd="/usr/local/bin/halt-me --now")
    upsmon = render.host_upsmon(config)
    assert f'MONITOR my-ups@127.0.0.1:3493 1 pi-host "{config.host_password}" secondary' in upsmon
    assert 'SHUTDOWNCMD "/usr/local/bin/halt-me --now"' in upsmon
    toml = render.agent_config(config)
    assert "[users.pi-host]" in toml and 'password_file = "/run/secrets/nut_host_password"' in toml
    assert (
        '[[shutdown.secondary]]\nname = "pi1"\nups = "my-ups"\nfrom = "host"' in toml and "ups_off_delay = 120" in toml
    )
    assert "expect_secondaries" not in toml  # the agent still reads it (older files), the fleet writes it no more
    assert "[[shutdown.secondary]]" not in render.agent_config(load(host_shutdown=False))
    with pytest.raises(data.DataError, match="host_shutdown_cmd"):
        load(host_shutdown_cmd="halt\nrm -rf /")
    with pytest.raises(data.DataError, match="ups_off_delay"):
        load(ups_off_delay=-5)
    with pytest.raises(data.DataError, match="fsd_clear_after: 5 is less than 60 s"):
        load(fsd_clear_after=5)


def test_a_fleet_key_others_can_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "key"
    monkeypatch.setenv("FLEET_KEY_FILE", str(key))
    load()  # made on first use, 0600
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(data.DataError, match="lets others read it: chmod 600"):
        load()


def test_temp_key_files_left_by_killed_runs_are_in_no_later_runs_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from fleet import keys

    key = tmp_path / "key"
    monkeypatch.setenv("FLEET_KEY_FILE", str(key))
    # A run killed just now, between its temp file's open and its unlink (the name earlier
    # versions always used: every later run failed on it), and one killed long ago.
    just_now, long_ago = tmp_path / ".key.tmp", tmp_path / ".key.k1ll3d.tmp"
    for left in (just_now, long_ago):
        left.write_text("00" * keys.KEY_BYTES + "\n")
        left.chmod(0o600)
    os.utime(long_ago, (1.0, 1.0))
    first = keys.password("pi1", "pi-host")
    assert key.stat().st_mode & 0o777 == 0o600 and key.read_text() != just_now.read_text()
    assert keys.password("pi1", "pi-host") == first  # the key made is the one kept
    # The old one swept; the fresh one left alone (it might be another run's at work).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".key.tmp", "key"]
    key.unlink()
    os.utime(just_now, (1.0, 1.0))
    load()  # a new key, and the leftover swept once it is old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_a_nut_client_host_gets_its_own_user_on_its_pi_with_one_derived_password() -> None:
    from fleet import clients

    pi_data = {"ssh_hostname": "10.0.0.5", "ups_name": "rack-ups", "nut_port": 3494}
    client = clients.load_client(
        "NAS.lan", lambda k: {"ups_server": "pi1", "shutdown_after": 300}.get(k), lambda k, d: pi_data.get(k, d)
    )
    assert (client.user, client.target, client.shutdown_after) == ("client-nas.lan", "rack-ups@10.0.0.5:3494", 300)
    pi = data.load("pi1", lambda key: data.DEFAULTS[key], {}, [("NAS.lan", "pi1"), ("desk", "pi2")])
    assert pi.clients == ((client.user, client.password),)  # the same password on both sides
    assert pi.secrets["nut_client_nas_lan"] == client.password
    toml = render.agent_config(pi)
    assert '[users."client-nas.lan"]\npassword_file = "/run/secrets/nut_client_nas_lan"' in toml
    render.check_agent_config(pi)
    files = render.client_files(client)
    assert f'MONITOR rack-ups@10.0.0.5:3494 1 client-nas.lan "{client.password}" secondary' in files["upsmon.conf"]
    assert "NOTIFYCMD /sbin/upssched" in files["upsmon.conf"]
    assert "AT ONBATT * START-TIMER on-battery-too-long 300" in files["upssched.conf"]
    assert "exec /sbin/upsmon -c fsd" in files["upssched-cmd"]
    plain = clients.load_client("desk", lambda k: {"ups_server": "pi1"}.get(k), lambda k, d: pi_data.get(k, d))
    assert set(render.client_files(plain)) == {"upsmon.conf"}
    assert client.password not in repr(client)


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [
        ("NAS", "nas", "upsd user 'client-nas'"),  # case folded
        ("nas+1", "nas-1", "upsd user 'client-nas-1'"),  # other characters made -
        ("n" * 40 + "-a", "n" * 40 + "-b", "upsd user 'client-" + "n" * 34 + "'"),  # cut at 41
        ("nas-lan", "nas.lan", "Docker secret 'nut_client_nas_lan'"),  # two users, one secret's name
    ],
)
def test_two_clients_of_a_pi_that_would_be_one_user_fail_that_pi_and_them_naming_both(
    first: str, second: str, what: str
) -> None:
    from fleet import clients

    members = [(first, "pi1"), (second, "pi1"), ("desk", "pi1")]
    both = f"nut_clients hosts {first!r} and {second!r} would both have the {what} on pi1"
    with pytest.raises(data.DataError, match=re.escape(f"host pi1: data nut_clients: {both}")):
        data.load("pi1", lambda key: data.DEFAULTS[key], {}, members)
    for host in (first, second):
        with pytest.raises(clients.ClientError, match=re.escape(f"host {host}: data ups_server: {both}")):
            clients.load_client(host, lambda k: {"ups_server": "pi1"}.get(k), lambda k, d: d, members)
    # The one without a clash, and the same names on two Pis (two upsds), are fine.
    assert clients.load_client("desk", lambda k: {"ups_server": "pi1"}.get(k), lambda k, d: d, members).user
    apart = [(first, "pi1"), (second, "pi2")]
    assert len(data.load("pi1", lambda key: data.DEFAULTS[key], {}, apart).clients) == 1


@pytest.mark.parametrize(
    ("given", "server", "message"),
    [
        ({}, True, "data ups_server: required"),
        ({"ups_server": "pi9"}, False, "'pi9' is not a host of this inventory"),
        ({"ups_server": "pi1", "shutdown_after": 0}, True, "data shutdown_after: 0 is not a whole number"),
        ({"ups_server": "pi1", "ups_server_address": "a b"}, True, "data ups_server_address"),
    ],
)
def test_bad_client_data_names_the_key(given: dict[str, Any], server: bool, message: str) -> None:
    from fleet import clients

    with pytest.raises(clients.ClientError, match=message):
        clients.load_client("nas", lambda k: given.get(k), (lambda k, d: d) if server else None)


def test_the_on_battery_and_docker_ce_facts_read_what_the_host_says() -> None:
    from fleet.facts import DockerCE, OnBattery

    status = {"served": {"my-ups": {"state": "ok", "status": "OB DISCHRG"}, "b": {"state": "ok", "status": "OL"}}}
    assert OnBattery().process(json.dumps(status).splitlines()) == ["my-ups"]
    fsd = {"served": {"my-ups": {"state": "ok", "status": "FSD OL"}}}
    assert OnBattery().process([json.dumps(fsd)]) == ["my-ups"]
    assert OnBattery().process([]) == []  # no container: nothing on battery known
    assert OnBattery().process(["not json"]) == []
    assert DockerCE().process(["yes"]) and not DockerCE().process(["no"])


def test_the_files_digest_is_the_same_from_the_wanted_files_and_from_the_live_dir(tmp_path: Path) -> None:
    """The container's label (Python, at render time) and the FilesDigest fact (the shell,
    on the host) agree on the same files, and differ as soon as one byte of any differs."""
    import subprocess

    from fleet import digest

    config = load({"NUT_MONUSER_PASSWORD": "secret-pass-1", "NUT_ADMIN_PASSWORD": "admin-pw-2"}, tz="Europe/Berlin")
    files, secrets = render.files(config), config.secrets
    label = json.loads(files["compose.yaml"].split("labels: ", 1)[1].splitlines()[0])[digest.LABEL]
    assert label == digest.of(files, secrets) and "secret-pass-1" not in files["compose.yaml"]

    def live() -> str:
        done = subprocess.run(["sh", "-c", digest.shell(str(tmp_path))], capture_output=True, text=True, timeout=20)
        return done.stdout.strip()

    assert live() == ""  # no deployment here
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    (tmp_path / "secrets").mkdir()
    for name, content in secrets.items():
        (tmp_path / "secrets" / name).write_text(content)
    assert live() == label
    (tmp_path / "secrets" / "nut_admin_password").write_text("admin-pw-3")
    assert live() not in ("", label)
    (tmp_path / "secrets" / "nut_admin_password").write_text("admin-pw-2")
    (tmp_path / "config.toml").write_text(files["config.toml"] + "# by hand\n")
    assert live() not in ("", label)
    assert (
        render.files(load({"NUT_MONUSER_PASSWORD": "other-pass-2"}, tz="Europe/Berlin"))["compose.yaml"]
        != files["compose.yaml"]
    )


def test_synology_compat_is_opt_in_and_tells_the_agent() -> None:
    assert "synology_compat" not in render.files(load())["config.toml"]
    config = load(synology_compat=True, ups_name="ups")
    toml = tomllib.loads(render.files(config)["config.toml"])
    assert toml["upsd"]["synology_compat"] is True
    assert config.env["UPS_NAME"] == "ups" and "nut_monuser_password" not in config.secrets


def test_metrics_are_off_unless_a_port_is_given_then_on_loopback_unless_metrics_listen_says() -> None:
    plain = render.files(load())
    assert "METRICS_LISTEN" not in plain[".env"] and "9199" not in plain["compose.yaml"]
    # A port alone: published on the Pi's loopback only, whatever nut_listen says.
    files = render.files(load(metrics_port=9199, nut_listen="192.168.1.10"))
    assert "METRICS_LISTEN=0.0.0.0:9199" in files[".env"]  # inside the container: for Docker's port
    assert '- "127.0.0.1:9199:9199"' in files["compose.yaml"] and '- "192.168.1.10:3493:3493"' in files["compose.yaml"]
    for listen in ("0.0.0.0", "192.168.1.10"):
        files = render.files(load(metrics_port=9199, metrics_listen=listen))
        assert f'- "{listen}:9199:9199"' in files["compose.yaml"] and "METRICS_LISTEN=0.0.0.0:9199" in files[".env"]
    with pytest.raises(data.DataError, match=re.escape("data metrics_listen: '0.0.0.0' given, but no metrics_port")):
        load(metrics_listen="0.0.0.0")
    with pytest.raises(
        data.DataError, match=r"data metrics_port: '0\.0\.0\.0:9199' is not a port: .* as metrics_listen"
    ):
        load(metrics_port="0.0.0.0:9199")


# What a Pi without notify_urls, notify_events and mqtt_url is given, byte for byte, as
# rendered before those keys existed (commit f83c7f2): a change here recreates the container
# of every Pi at its next run. (compose.yaml without its label: that holds the digest of the
# secrets, which derive from each controller's fleet key.) compose.yaml changed once on
# purpose since: Docker's log capped (`logging:`), which only a recreated container takes;
# and config.toml once: the UPS that powers the Pi and the logins its agent expects
# (host_ups, [[shutdown.secondary]]) in place of a bare count (expect_secondaries).
UNCHANGED = {
    "default": {
        "compose.yaml": "dd05f0fcd35a1d099e6e665720d850508fee07d3a1d9bc4d8987c02533bc6be3",
        ".env": "c8debff515892e3eb054df57aa61bc740f3120285c9774d54aae7f3c1694f8f2",
        "config.toml": "1470ea3cc5facea965254cd616c9e1e83ba3e97e677d70a5998b62694354606f",
    },
    "host_shutdown off": {
        "compose.yaml": "42728456cf732848e0efbf5bc0e563f6e3b1b7b3c8cdbbc7c671f0c906e39bdc",
        ".env": "c8debff515892e3eb054df57aa61bc740f3120285c9774d54aae7f3c1694f8f2",
        "config.toml": "92622ed0b55ef1fce9df90456de06d83d2231a232a43c9f83c197938ff81c2bd",
    },
}


def test_a_pi_without_the_output_keys_keeps_its_files_byte_for_byte() -> None:
    import hashlib

    from fleet import digest

    for name, config in (("default", load()), ("host_shutdown off", load(host_shutdown=False))):
        files = render.files(config)
        files["compose.yaml"] = digest.without_label(files["compose.yaml"])
        assert {k: hashlib.sha256(v.encode()).hexdigest() for k, v in files.items()} == UNCHANGED[name], name


SECRET_URL = "tgram://123456:bot-token-s3cret/987654"
SECRET_MQTT = "mqtt://ha:mqtt-pa55word@broker.lan:1883"


def test_notify_and_mqtt_reach_the_agent_as_secrets_files_and_name_the_pi() -> None:
    config = load(
        notify_urls=[SECRET_URL, "json://10.0.0.2:8080/hook"], notify_events="default, -held", mqtt_url=SECRET_MQTT
    )
    assert config.secrets["notify_urls"] == f"{SECRET_URL}\njson://10.0.0.2:8080/hook\n"  # one URL a line
    assert config.secrets["mqtt_url"] == SECRET_MQTT + "\n"
    files = render.files(config)
    written = "".join(files.values())
    assert SECRET_URL not in written and "mqtt-pa55word" not in written and "bot-token" not in repr(config)
    assert "mqtt-pa55word" not in repr(config)
    env = dict(line.split("=", 1) for line in files[".env"].splitlines() if line and not line.startswith("#"))
    assert (env["HOST_NAME"], env["NOTIFY_EVENTS"]) == ("pi1", "default,-held")
    for secret in ("notify_urls", "mqtt_url"):
        assert f'      - "{secret}"' in files["compose.yaml"]  # the service's secret: /run/secrets/<name>
        assert f'file: "./secrets/{secret}"' in files["compose.yaml"]
    # One string is one URL; each of the three outputs names the Pi.
    assert load(notify_urls="ntfy://my-topic").secrets["notify_urls"] == "ntfy://my-topic\n"
    assert load(metrics_port=9199).env["HOST_NAME"] == "pi1"
    assert load(mqtt_url="mqtts://broker.lan").env["HOST_NAME"] == "pi1"
    plain = load(notify_urls=[], mqtt_url="", notify_events="")
    assert "HOST_NAME" not in plain.env and "NOTIFY_EVENTS" not in plain.env
    assert set(plain.secrets) == {"nut_host_password"}


def test_the_host_name_the_agent_is_given_is_one_it_accepts() -> None:
    from fleet.config import host_name
    from reconcile import settings

    for name, want in [
        ("pi-rack.lan", "pi-rack.lan"),
        ("@local", "local"),
        ("pi 1/garage", "pi-1-garage"),
        ("::1", "1"),
        ("@@@", "pi"),
        ("x" * 80, "x" * 63),
    ]:
        assert host_name(name) == want
        assert settings.load({"HOST_NAME": host_name(name)}).host_name == want  # the agent's own check


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"notify_urls": [SECRET_URL, "not-a-url-but-a-token"]}, "data notify_urls: [1] is not an Apprise URL"),
        ({"notify_urls": "json://a,b"}, "data notify_urls: [0] is not an Apprise URL"),  # the agent would split it
        ({"notify_urls": ["json://a b"]}, "data notify_urls: [0] is not an Apprise URL"),
        ({"mqtt_url": "http://user:pa55word@broker"}, "data mqtt_url: the scheme must be mqtt or mqtts, not 'http'"),
        ({"mqtt_url": "pa55word"}, "data mqtt_url: the scheme must be mqtt or mqtts ("),
        ({"mqtt_url": "mqtt://user:pa55word@broker:99999"}, "data mqtt_url: not a broker URL"),
        ({"mqtt_url": "mqtt://user:pa55word@broker/topic"}, "data mqtt_url: not a broker URL"),
        ({"mqtt_url": "mqtt://user:pa55word@"}, "data mqtt_url: not a broker URL"),
        ({"mqtt_url": "mqtt://broker\n:1883"}, "data mqtt_url: not a broker URL"),
        ({"mqtt_url": "mqtt://user:pa55word@broker#x"}, "data mqtt_url: not a broker URL"),
    ],
)
def test_a_bad_url_names_the_host_the_key_and_the_index_never_the_url(given: dict[str, Any], message: str) -> None:
    with pytest.raises(data.DataError) as err:
        load(**given)
    text = str(err.value)
    assert text.startswith("host pi1: ") and message in text, text
    assert "not shown" in text
    for secret in ("pa55word", "bot-token", "not-a-url", "json://a"):
        assert secret not in text


def test_what_the_fleet_accepts_the_agent_accepts_too() -> None:
    """The fleet's Apprise URL check is its own (stricter: no comma), the MQTT one is the
    agent's (settings.broker_url); each accepted value is given to the agent's settings here."""
    from reconcile import settings

    for urls in (["ntfy://my-topic"], [SECRET_URL, "json://10.0.0.2:8080/hook", "mailtos://u:p@mail.lan"]):
        config = load(notify_urls=urls)
        agent = settings.load({"NOTIFY_URLS": config.secrets["notify_urls"]}).notify
        assert agent is not None and agent.urls == tuple(urls)
    for url in (SECRET_MQTT, "mqtts://broker.lan", "mqtt://[fd00::1]:1883", "mqtt://u%40x:p%2Fw@b/"):
        config = load(mqtt_url=url)
        mqtt = settings.load({"MQTT_URL": config.secrets["mqtt_url"]}).mqtt
        assert mqtt is not None and mqtt.host in ("broker.lan", "fd00::1", "b"), url


@pytest.mark.parametrize(
    "url",
    ["http://user:pa55word@broker", "mqtt://user:pa55word@broker/topic", "mqtt://broker\n:1883", "mqtt://b#x"],
)
def test_what_the_fleet_refuses_as_mqtt_url_the_agent_refuses_too(url: str) -> None:
    from reconcile import settings

    with pytest.raises(data.DataError):
        load(mqtt_url=url)
    with pytest.raises(settings.SettingsError) as err:
        settings.load({"MQTT_URL": url})
    assert err.value.variable == "MQTT_URL" and "pa55word" not in str(err.value)


def test_the_wake_up_settings_reach_the_env_file_only_when_given() -> None:
    env = load(uevents=False, rescan_interval=10, settle_min="0.25").env
    assert (env["UEVENTS"], env["RESCAN_INTERVAL"], env["SETTLE_MIN"]) == ("0", "10", "0.25")
    assert not {"UEVENTS", "RESCAN_INTERVAL", "SETTLE_MIN"} & set(load().env)  # a Pi without them: as it was
