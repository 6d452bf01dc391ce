"""Code normalisation: what operators type and machines print must find the table's code."""

import pytest

from kb.normalize import code_key, looks_like_code


@pytest.mark.parametrize(
    "typed",
    ["E-203", "e-203", "E203", "e203", "e 203", "E 203", " E-203 ", "Ｅ－２０３", "ｅ２０３", "E_203", "E–203", "E—203"],
)
def test_variants_share_one_key(typed: str) -> None:
    assert code_key(typed) == "E203"


def test_prefix_keeps_tables_apart() -> None:
    assert code_key("error:9") == "ERROR9"
    assert code_key("ALARM:9") == "ALARM9"
    assert code_key("error:9") != code_key("ALARM:9")
    assert code_key("Error 9") == code_key("error:9")


@pytest.mark.parametrize("text", ["A01", "E-203", "error:9", "ALARM:1", "AL-1001", "ｅ－２０３", "sp 105"])
def test_codes_look_like_codes(text: str) -> None:
    assert looks_like_code(text)


@pytest.mark.parametrize("text", ["belt squeals on start", "皮帶異音", "", "   ", "motor", "the belt slips after 203 cycles"])
def test_symptoms_do_not_look_like_codes(text: str) -> None:
    assert not looks_like_code(text)
