from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.settings import SettingsError, load
from reconcile.userconfig import ConfigError, UserConfig, parse
from reconcile.userconfig import load as load_config


def test_defaults() -> None:
    s = load({})
    assert (s.scan_interval, s.settle_time, s.ups_name, s.debug) == (2.0, 2.0, "my-ups", False)
    assert str(s.usb_sysfs_root) == "/sys/bus/usb/devices" and str(s.statepath) == "/var/run/nut"
    assert str(s.log_file) == "/var/log/nut/hotplug.log" and s.log_file_max == 1 << 20
    assert str(s.agent_dir) == "/var/lib/nut-reconcile" and s.run_user == "root"
    assert s.upsd_user == "nut"  # where the user exists: upsd never touches a device
    assert load({"SCAN_INTERVAL": "0.5", "SETTLE_TIME": " 3 "}).scan_interval == 0.5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SCAN_INTERVAL": "abc"}, "SCAN_INTERVAL"),
        ({"SCAN_INTERVAL": "nan"}, "SCAN_INTERVAL"),
        ({"SCAN_INTERVAL": "0"}, "SCAN_INTERVAL"),
        ({"SETTLE_TIME": "1e9"}, "SETTLE_TIME"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"UPS_NAME": "my ups"}, "UPS_NAME"),
        ({"UPS_NAME": "ups@host"}, "UPS_NAME"),
        ({"TZ": "Europe/../../etc"}, "TZ"),
        ({"NUT_CONFPATH": "etc/nut"}, "NUT_CONFPATH"),
        ({"RECONCILE_CONFIG": "/no/such/file.toml"}, "RECONCILE_CONFIG"),
        ({"NUT_UPSD": "/no/such/upsd"}, "NUT_UPSD"),
        ({"NUT_USER": "root;rm"}, "NUT_USER"),
        ({"NUT_USER": "nosuchuser"}, "NUT_USER"),
        ({"UPSD_USER": "nosuchuser"}, "UPSD_USER"),
        # Numbers in env are ASCII decimal: no other digits, exponents, signs or underscores.
        ({"SCAN_INTERVAL": "\u0661\u0660"}, "SCAN_INTERVAL"),
        ({"SCAN_INTERVAL": "1e1"}, "SCAN_INTERVAL"),
        ({"SCAN_INTERVAL": "+2"}, "SCAN_INTERVAL"),
        ({"SCAN_INTERVAL": "1_0"}, "SCAN_INTERVAL"),
        ({"SETTLE_TIME": "inf"}, "SETTLE_TIME"),
        ({"LOG_FILE_MAX": "1.5"}, "LOG_FILE_MAX"),
        ({"LOG_FILE_MAX": "10"}, "LOG_FILE_MAX"),
        ({"RECONCILE_STATE": "/var/run/nut/reconcile"}, "RECONCILE_STATE"),
        ({"RECONCILE_STATE": "state"}, "RECONCILE_STATE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(env)
    assert err.value.variable == variable and variable in str(err.value)


def test_the_issue_example_rule_parses() -> None:
    cfg = parse(
        {
            "device": [
                {
                    "match": {"vendorid": "051d", "productid": "0002"},
                    "driver": "dummy-ups",
                    "options": {"port": "/path/to/ups.dev"},
                }
            ]
        }
    )
    (rule,) = cfg.rules
    assert (rule.vendorid, rule.productid, rule.driver, rule.options) == (
        "051d",
        "0002",
        "dummy-ups",
        (("port", "/path/to/ups.dev"),),
    )


@pytest.mark.parametrize(
    ("data", "culprit"),
    [
        ({"devices": []}, "unknown key(s) devices"),
        ({"device": [{"match": {"vendorid": "51d"}}]}, "device[0].match.vendorid"),
        ({"device": [{"match": {}}]}, "device[0].match"),
        ({"device": [{"match": {"vendorid": "051d"}, "options": {"bus": "001"}}]}, "device[0].options.bus"),
        ({"device": [{"match": {"vendorid": "051d"}, "options": {"port": "a\nb"}}]}, "device[0].options.port"),
        ({"device": [{"match": {"vendorid": "051d"}, "name": "My UPS"}]}, "device[0].name"),
        ({"upsd": {"listen": ["0.0.0.0"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["999.999.999.999:3493"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["localhost:3493"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["::1:3493"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["[127.0.0.1]:3493"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["127.0.0.1:70000"]}}, "upsd.listen"),
        ({"upsd": {"listen": ["127.0.0.1:3493", "127.0.0.1:3493"]}}, "twice"),
        ({"device": [{"match": {"vendorid": "0x051d"}}]}, "device[0].match.vendorid"),
        ({"device": [{"match": {"productid": True}}]}, "device[0].match.productid"),
        ({"device": [{"match": {"vendorid": "051d"}, "desc": "a", "options": {"desc": "b"}}]}, "options.desc"),
        ({"device": [{"match": {"vendorid": "051d"}, "powers_host": "no"}]}, "device[0].powers_host"),
        ({"users": {"monuser": {"password": "has=equals-sign"}}}, "users.monuser"),
        ({"upsmon": {"pollfreq": 5, "deadtime": 10}}, "upsmon.deadtime"),
        ({"upsmon": {"pollfreq": 0}}, "upsmon.pollfreq"),
        ({"users": {"admin": {"password": "short"}}}, "users.admin"),
        ({"device": [{"match": {"serial": "a"}, "name": "x"}, {"match": {"serial": "b"}, "name": "x"}]}, "x"),
    ],
)
def test_bad_config_names_the_culprit(data: dict[str, object], culprit: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as err:
        parse(data)
    assert culprit in str(err.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[upsd\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
    assert load_config(None) == UserConfig()


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("monitor-pass-1\n")
    cfg = parse({"users": {"monuser": {"password_file": str(secret)}}})
    assert cfg.password_for("monuser") == "monitor-pass-1"


def test_a_numeric_usb_id_is_refused_with_the_fix() -> None:
    # TOML reads vendorid = 0x051d as the number 1309, which would never match a device.
    with pytest.raises(ConfigError) as err:
        parse({"device": [{"match": {"vendorid": 0x051D}}]})
    assert "device[0].match.vendorid" in str(err.value) and '"051d"' in str(err.value)


def test_listen_addresses_are_real_ip_addresses() -> None:
    cfg = parse({"upsd": {"listen": ["0.0.0.0:3493", "[::1]:3494", "192.168.1.10:3493"]}})
    assert cfg.listen == (("0.0.0.0", 3493), ("::1", 3494), ("192.168.1.10", 3493))


def test_upsmon_timing_and_powers_host() -> None:
    cfg = parse(
        {
            "upsmon": {"pollfreq": 1, "deadtime": 3},
            "device": [{"match": {"vendorid": "051D"}, "powers_host": False}],
        }
    )
    assert (cfg.pollfreq, cfg.deadtime) == (1, 3)
    assert cfg.rules[0].vendorid == "051d" and cfg.rules[0].powers_host is False


def test_synology_compat_wants_the_ups_named_ups_and_no_monuser_password(tmp_path: Path) -> None:
    assert parse({"upsd": {"synology_compat": True}}).synology_compat
    assert not parse({}).synology_compat
    with pytest.raises(ConfigError, match=r"upsd\.synology_compat must be true or false"):
        parse({"upsd": {"synology_compat": "yes"}})
    with pytest.raises(ConfigError, match=r"users\.monuser: with upsd\.synology_compat"):
        parse({"upsd": {"synology_compat": True}, "users": {"monuser": {"password": "monitor-pass-1"}}})
    path = tmp_path / "config.toml"
    path.write_text("[upsd]\nsynology_compat = true\n")
    assert load_config(path, "ups").synology_compat
    with pytest.raises(ConfigError) as err:
        load_config(path, "my-ups")
    assert str(err.value).startswith(f"{path}: upsd.synology_compat: ")
    assert str(err.value).endswith("UPS_NAME is 'my-ups': set UPS_NAME=ups")
