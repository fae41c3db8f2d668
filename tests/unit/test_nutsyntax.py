from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.nutsyntax import (
    NutSyntaxError,
    encode,
    ere_escape,
    parse_sections,
    printable_ascii,
    tokenize,
    validate_name,
    validate_password,
)

printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@given(printable)
def test_encoded_value_reads_back_as_exactly_one_word(value: str) -> None:
    assert tokenize(f"desc = {encode(value, 'v')}\n") == [["desc", "=", value]]


@given(printable)
def test_regex_escape_matches_the_literal_and_only_it(value: str) -> None:
    pattern = ere_escape(value)
    assert re.fullmatch(pattern, value)
    assert re.fullmatch(pattern, value + "x") is None


def test_the_issue_injection_serial_stays_one_value() -> None:
    evil = 'A"B#\\\n[evil]'
    with pytest.raises(NutSyntaxError):
        encode(evil, "serial")  # a raw newline is refused, never written
    cleaned = printable_ascii(evil)
    assert cleaned == 'A"B#\\[evil]'
    text = f"[my-ups]\n  driver = usbhid-ups\n  serial = {encode(ere_escape(cleaned), 'serial')}\n"
    _, sections = parse_sections(text)
    assert [s.name for s in sections] == ["my-ups"]
    assert sections[0].get("serial") == 'A"B#\\\\\\[evil\\]'


def test_control_and_non_ascii_are_refused() -> None:
    for bad in ("tab\there", "caf\u00e9", "cr\r", "nul\x00"):
        with pytest.raises(NutSyntaxError):
            encode(bad, "desc")


def test_tokenizer_follows_nut_rules() -> None:
    assert tokenize("a=b # comment\nc \\# d\n") == [["a", "=", "b"], ["c", "#", "d"]]
    assert tokenize('x = "two words"\n') == [["x", "=", "two words"]]
    assert tokenize("joined \\\nline\n") == [["joined", "line"]]
    with pytest.raises(NutSyntaxError):
        tokenize('x = "open # quote"\n')


@pytest.mark.parametrize("name", ["my-ups", "ups2", "a.b_c-d", "0"])
def test_good_names(name: str) -> None:
    assert validate_name(name, "UPS_NAME") == name


@pytest.mark.parametrize("name", ["my ups", "ups@home", "a:b", "a/b", "default", "UPS", "", "-x", "x" * 42])
def test_bad_names_are_refused_with_the_variable(name: str) -> None:
    with pytest.raises(NutSyntaxError, match="UPS_NAME"):
        validate_name(name, "UPS_NAME")


def test_password_rules_never_echo_the_password() -> None:
    assert validate_password("abcdefgh12", "users.admin") == "abcdefgh12"
    with pytest.raises(NutSyntaxError) as err:
        validate_password("has#hash-in-it", "users.admin")
    assert "has#hash" not in str(err.value) and "users.admin" in str(err.value)
