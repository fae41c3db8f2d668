"""The image's OpenVEX document (docker/): its structure by the OpenVEX v0.2.0 spec (no
schema fetched: the required fields and value sets are written out here), each CVE named
in docs/security.md, and the NUT version and install path the Dockerfile has."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest

from fleet.steps import BUILD_CONTEXT
from testbed import REPO

VEX = REPO / "docker" / "ups-nut-smart.openvex.json"
INSTALLED = "/usr/share/doc/ups-nut-smart/ups-nut-smart.openvex.json"

# OpenVEX v0.2.0: what each object may hold, what it must.
DOCUMENT = {"@context", "@id", "author", "role", "timestamp", "last_updated", "version", "tooling", "statements"}
DOCUMENT_REQUIRED = {"@context", "@id", "author", "timestamp", "version", "statements"}
STATEMENT = {
    *("@id", "version", "vulnerability", "timestamp", "last_updated", "products", "status", "supplier"),
    *("status_notes", "justification", "impact_statement", "action_statement", "action_statement_timestamp"),
}
VULNERABILITY = {"@id", "name", "description", "aliases"}
PRODUCT = {"@id", "identifiers", "hashes", "subcomponents"}
IDENTIFIERS = {"purl", "cpe22", "cpe23"}
STATUSES = {"not_affected", "affected", "fixed", "under_investigation"}
JUSTIFICATIONS = {
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
}
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
CVE = re.compile(r"CVE-\d{4}-\d{4,}")


@pytest.fixture(scope="module")
def vex() -> dict[str, Any]:
    document = json.loads(VEX.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def timestamp(value: Any, what: str) -> datetime:
    assert isinstance(value, str) and RFC3339.fullmatch(value), f"{what}: {value!r} is not an RFC 3339 date-time"
    return datetime.fromisoformat(value.replace("z", "Z"))


def fields(obj: Any, allowed: set[str], required: set[str], what: str) -> dict[str, Any]:
    assert isinstance(obj, dict), f"{what}: not an object"
    assert set(obj) <= allowed, f"{what}: fields OpenVEX v0.2.0 does not have: {sorted(set(obj) - allowed)}"
    assert required <= set(obj), f"{what}: missing {sorted(required - set(obj))}"
    return obj


def product(obj: Any, what: str) -> None:
    fields(obj, PRODUCT, {"@id"}, what)
    assert isinstance(obj["@id"], str) and IRI.fullmatch(obj["@id"]), f"{what}: @id {obj['@id']!r} is not an IRI"
    ids = fields(obj.get("identifiers", {}), IDENTIFIERS, set(), f"{what} identifiers")
    if "purl" in ids:
        assert ids["purl"].startswith("pkg:") and ids["purl"] == obj["@id"], ids
    for index, sub in enumerate(obj.get("subcomponents", [])):
        product(sub, f"{what} subcomponent {index}")


def test_the_document_has_what_openvex_0_2_0_requires(vex: dict[str, Any]) -> None:
    fields(vex, DOCUMENT, DOCUMENT_REQUIRED, "document")
    assert vex["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert IRI.fullmatch(vex["@id"]), vex["@id"]
    assert isinstance(vex["author"], str) and vex["author"].strip()
    issued = timestamp(vex["timestamp"], "timestamp")
    if "last_updated" in vex:
        assert timestamp(vex["last_updated"], "last_updated") >= issued
    assert isinstance(vex["version"], int) and not isinstance(vex["version"], bool) and vex["version"] >= 1
    assert isinstance(vex["statements"], list) and vex["statements"]
    for index, statement in enumerate(vex["statements"]):
        what = f"statement {index}"
        fields(statement, STATEMENT, {"vulnerability", "products", "status"}, what)
        vulnerability = fields(statement["vulnerability"], VULNERABILITY, {"name"}, f"{what} vulnerability")
        assert CVE.fullmatch(vulnerability["name"]), vulnerability["name"]
        assert all(isinstance(alias, str) and alias for alias in vulnerability.get("aliases", []))
        for key in ("timestamp", "last_updated", "action_statement_timestamp"):
            if key in statement:
                assert timestamp(statement[key], f"{what} {key}") >= issued
        assert statement["status"] in STATUSES, statement["status"]
        if statement["status"] == "not_affected":
            # The spec: a justification or an impact statement; ours gives both.
            assert statement.get("justification") in JUSTIFICATIONS, statement.get("justification")
            assert isinstance(statement.get("impact_statement"), str) and statement["impact_statement"].strip()
        if statement["status"] == "affected":
            assert statement.get("action_statement"), f"{what}: affected needs an action_statement"
        assert isinstance(statement["products"], list) and statement["products"]
        for number, item in enumerate(statement["products"]):
            product(item, f"{what} product {number}")


def test_every_cve_in_it_is_explained_in_the_security_doc(vex: dict[str, Any]) -> None:
    security = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    for statement in vex["statements"]:
        vulnerability = statement["vulnerability"]
        for name in (vulnerability["name"], *vulnerability.get("aliases", [])):
            assert name in security, f"{name} is in {VEX.name} but not in docs/security.md"
    assert "ups-nut-smart.openvex.json" in security


def test_it_names_the_nut_the_image_builds_and_the_image_installs_and_labels_it(vex: dict[str, Any]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    built = re.search(r"^ARG NUT_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert built is not None
    ids = {sub["@id"] for s in vex["statements"] for p in s["products"] for sub in p.get("subcomponents", [])}
    assert f"pkg:generic/nut@{built[1]}" in ids, (ids, built[1])
    assert {p["@id"] for s in vex["statements"] for p in s["products"]} == {"pkg:oci/ups-nut-smart"}
    assert f"COPY {VEX.relative_to(REPO)} {INSTALLED}\n" in dockerfile
    assert f'io.ups-nut-smart.openvex="{INSTALLED}"' in dockerfile
    # The build context keeps it: .dockerignore leaves docker/ in, and the fleet's build on
    # a Pi (image_source build) copies it there.
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert not {"docker", "docker/", "*.json"} & set(ignored)
    assert VEX.relative_to(REPO).parts[0] in BUILD_CONTEXT
