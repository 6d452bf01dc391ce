"""Codes as machines, scanners, vendors and people really write them, found in the entry.

Each table row is a real-world spelling: a QR payload without a scheme, a vendor URL with a
query string, `#13101` from a printer's screen, a typed `Error 13101`, a Chinese sentence, a
Grbl alarm line with its own message. Only codes the KB knows count; two of them leave the
choice to the operator. Keys come from real KBs: the sample KB, the Grbl corpus through
kb/mappings/grbl.toml, and a vendor table with five-digit codes for two printer models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.engine.resolve import resolve
from kb.build import SourceSpec, build
from kb.normalize import extract_codes
from kb.reader import KnowledgeBase
from kb.versions import VersionStore
from tests.conftest import GRBL, SAMPLE_KB

MAPPING = Path(__file__).resolve().parent.parent / "kb" / "mappings" / "grbl.toml"

VENDOR_CODES = """code,title,steps,machine_model,severity,lang
13101,Hotend heating failed,Check the heater cable | Replace the heater cartridge,P1,critical,en
13101,Hotend heating failed,Check the heater cable at the toolhead board | Replace the hotend,X1,critical,en
13102,Hotend thermistor open,Reseat the thermistor connector | Replace the thermistor,,warning,en
"""


def _open(folder: Path, home: Path, mapping: Path | None = None) -> KnowledgeBase:
    store = VersionStore(home / "kb")
    build([SourceSpec(folder, mapping)], store, None)
    path = store.current_path()
    assert path is not None
    return KnowledgeBase(path)


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, KnowledgeBase]]:
    vendor = tmp_path_factory.mktemp("vendor_src")
    (vendor / "codes").mkdir()
    (vendor / "codes" / "printer_errors.csv").write_text(VENDOR_CODES, encoding="utf-8")
    opened = {
        "sample": _open(SAMPLE_KB, tmp_path_factory.mktemp("sample")),
        "vendor": _open(vendor, tmp_path_factory.mktemp("vendor")),
    }
    if GRBL.is_dir():
        opened["grbl"] = _open(GRBL, tmp_path_factory.mktemp("grbl"), MAPPING)
    yield opened
    for kbase in opened.values():
        kbase.close()


SPELLINGS = [
    # (KB, entry, the codes found as written)
    ("vendor", "13101", ["13101"]),
    ("vendor", "#13101", ["13101"]),
    ("vendor", "Error 13101", ["13101"]),
    ("vendor", "error code: 13101", ["13101"]),
    ("vendor", "vendor.io/13101", ["13101"]),
    ("vendor", "wiki.vendor.com/x1/troubleshooting/hmc/13101", ["13101"]),
    ("vendor", "https://e.vendor.com/hms?code=13101&lang=en", ["13101"]),
    ("vendor", "HMS 13101: hotend heating failed", ["13101"]),
    ("vendor", "printer shows 13101 and then 13102", ["13101", "13102"]),
    ("vendor", "nozzle is at 20 degrees after 5 minutes", []),  # numbers that are no known code
    ("sample", "https://host/path/E-203?x=1", ["E-203"]),
    ("sample", "http://10.0.0.5/alarm/E-203#detail", ["E-203"]),
    ("sample", "http://a01-gw.plant.local:8080/alarm/E-203", ["E-203"]),  # a host is never the code
    ("sample", "cv01.plant.local/alarms/A07", ["A07"]),
    ("sample", "錯誤碼 E203", ["E203"]),
    ("sample", "錯誤碼：E-203，料管溫度過高", ["E-203"]),
    ("sample", "輸送帶跳A07", ["A07"]),
    ("sample", "What does A02 mean?", ["A02"]),
    ("sample", "M3,A01,BELT TENSION", ["A01"]),
    ("sample", "Alarm AL-1005 on MC-02", ["AL-1005"]),
    ("sample", "E-203 again, E203 like yesterday", ["E-203"]),  # one code, written twice
    ("sample", "A01 then A03", ["A01", "A03"]),
    ("sample", "pen read 6.8 mm/s at the tail", []),
    ("grbl", "ALARM:1 [Hard limit]", ["ALARM:1"]),
    ("grbl", "error:9", ["error:9"]),
    ("grbl", "Error 9 when I send G0", ["Error 9"]),  # Grbl's prefix is part of its code
    ("grbl", "[MSG:Reset to continue] ALARM:3", ["ALARM:3"]),
]


@pytest.mark.parametrize(("kb_name", "entry", "expected"), SPELLINGS)
def test_real_world_spellings_find_the_known_code(kbs: dict[str, KnowledgeBase], kb_name: str, entry: str,
                                                  expected: list[str]) -> None:
    if kb_name not in kbs:
        pytest.skip("the shared Grbl corpus is not beside the repo")
    assert kbs[kb_name].codes_in_text(entry) == expected


@pytest.mark.parametrize(("entry", "code"), [
    ("vendor.io/13102", "13102"), ("Error 13102", "13102"), ("#13102", "13102"),
    ("https://e.vendor.com/hms/13102?lang=en", "13102"),
])
def test_the_engine_resolves_a_code_inside_the_entry(kbs: dict[str, KnowledgeBase], entry: str, code: str) -> None:
    resolved = resolve(kbs["vendor"], entry, "", "en")
    assert resolved.entry is not None and resolved.entry.code == code
    assert resolved.normalized == code and not resolved.codes_in_entry


def test_two_known_codes_leave_the_choice_to_the_operator(kbs: dict[str, KnowledgeBase]) -> None:
    resolved = resolve(kbs["sample"], "A01 or A03?", "", "en")
    assert resolved.entry is None and resolved.normalized is None
    assert resolved.codes_in_entry == ("A01", "A03")
    assert resolved.waiting and any("A01" in n and "A03" in n for n in resolved.notices)


def test_a_model_specific_code_in_a_url_is_still_ambiguous_without_a_machine(kbs: dict[str, KnowledgeBase]) -> None:
    resolved = resolve(kbs["vendor"], "vendor.io/13101", "", "en")
    assert resolved.entry is None and resolved.ambiguous
    assert sorted(c.machine_model for c in resolved.candidates) == ["P1", "X1"]
    picked = resolve(kbs["vendor"], "vendor.io/13101", "", "en", machine_model="X1")
    assert picked.entry is not None and picked.entry.machine_model == "X1"


def test_only_known_codes_are_extracted() -> None:
    assert extract_codes("Error 13101 at 20 C", frozenset({"13101"})) == ["13101"]
    assert extract_codes("Error 13101 at 20 C", frozenset()) == []


@pytest.mark.parametrize(("entry", "code"), [("ALARM:1 [Hard limit]", "ALARM:1"), ("error:9", "error:9"),
                                             ("Error 9 when I send G0", "error:9")])
def test_grbl_lines_resolve_to_grbls_own_rows(kbs: dict[str, KnowledgeBase], entry: str, code: str) -> None:
    if "grbl" not in kbs:
        pytest.skip("the shared Grbl corpus is not beside the repo")
    resolved = resolve(kbs["grbl"], entry, "", "en")
    assert resolved.entry is not None and resolved.entry.code == code, resolved
