"""Every manual and table format a plant really has, from small real files made here.

PDF (two pages, headings by font size or by outline), HTML, DOCX, TXT manuals; XLSX code
tables and repair records, canonical and through a mapping. Then a real build: lookups,
history, passages with pages and heading paths, and an unchanged rebuild embeds nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kb.errors import SourceError
from kb.ingest import MANUAL_SUFFIXES, read_sections


def make_pdf(path: Path, pages: list[list[tuple[float, str]]]) -> None:
    """Write a real, minimal PDF: one Helvetica line per (font size, text), top to bottom."""
    objects: list[bytes] = []
    page_ids: list[int] = []
    for index, lines in enumerate(pages):
        y = 760.0
        ops = []
        for size, text in lines:
            y -= size * 1.6
            safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {size:g} Tf 72 {y:.1f} Td ({safe}) Tj ET")
        stream = "\n".join(ops).encode("latin-1")
        page_id = 4 + index * 2
        page_ids.append(page_id)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    head = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, obj in enumerate(head + objects, start=1):
        offsets.append(len(body))
        body += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(body)
    count = len(offsets) + 1
    body += f"xref\n0 {count}\n0000000000 65535 f \n".encode()
    body += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    body += f"trailer\n<< /Size {count} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(body)


PUMP_PDF = [
    [
        (20, "Hydraulic unit HU-40"),
        (11, "The pump delivers 70 bar at rated speed."),
        (11, "Check the oil level every shift."),
        (15, "Oil temperature"),
        (11, "Keep the oil below 55 C. Alarm H12 trips at 60 C."),
    ],
    [
        (11, "When the oil runs hot, clean the cooler fins and check the fan."),
        (15, "Pressure relief valve"),
        (11, "Set the relief valve to 80 bar with the gauge on port P2."),
    ],
]

HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Labeler LB-3</title>
<style>body { color: red }</style><script>var tracking = "do not index";</script></head>
<body>
<nav>Home | Products | Contact</nav>
<h1>Labeler LB-3</h1>
<p>Applies labels to cartons at up to 60 per minute.</p>
<h2>Label sensor</h2>
<p>The gap sensor reads the label web.<br>Clean it with a dry cloth.</p>
<h3>Calibration 校正</h3>
<p>按住 <b>CAL</b> 三秒，直到指示燈閃爍。</p>
<table><tr><th>Code</th><th>Meaning</th></tr><tr><td>L7</td><td>Label not detected</td></tr></table>
<h2>Drive belt</h2>
<ul><li>Check tension monthly.</li><li>Replace when cracked.</li></ul>
<footer>Copyright ACME</footer>
</body></html>
"""


def make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Wrapper SW-9 service manual", 0)
    document.add_paragraph("Read the safety chapter before any work.")
    document.add_heading("Film carriage", 1)
    document.add_paragraph("The film carriage moves on two guide rails.")
    document.add_heading("Film break 薄膜斷裂", 2)
    document.add_paragraph("薄膜斷裂時，檢查預拉伸滾輪是否有異物。")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Code"
    table.cell(0, 1).text = "Action"
    table.cell(1, 0).text = "W31"
    table.cell(1, 1).text = "Rethread the film"
    document.add_heading("Turntable", 1)
    document.add_paragraph("Grease the turntable bearing every 500 hours.")
    document.save(str(path))


def make_xlsx(path: Path, sheet: str, rows: list[list[object]]) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet
    for row in rows:
        ws.append(row)
    book.save(str(path))


# -- readers ---------------------------------------------------------------------------------
def write_manual(path: Path, heading: str, sentence: str) -> None:
    """A real one-section manual in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        path.write_text(f"# {heading}\n\n{sentence}\n", encoding="utf-8")
    elif suffix == ".txt":
        path.write_text(f"{heading}\n{sentence}\n", encoding="utf-8")
    elif suffix == ".pdf":
        make_pdf(path, [[(20, heading), (11, sentence)]])
    elif suffix in (".html", ".htm", ".xhtml"):
        path.write_text(f"<html><body><h1>{heading}</h1><p>{sentence}</p></body></html>", encoding="utf-8")
    elif suffix == ".docx":
        import docx

        document = docx.Document()
        document.add_heading(heading, 1)
        document.add_paragraph(sentence)
        document.save(str(path))
    else:
        raise AssertionError(f"no sample for {suffix}")


# What a plant's shared drive holds, as files are named there (upper-case suffixes too).
@pytest.mark.parametrize("name", ["oven.md", "oven.markdown", "oven.txt", "oven.pdf", "OVEN.PDF", "oven.html",
                                  "oven.htm", "oven.xhtml", "oven.docx"])
def test_every_manual_format_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_manual(path, "Curing oven", "Clean the oven fan filter every week.")
    assert path.suffix.lower() in MANUAL_SUFFIXES  # so kb.build hands it to read_sections
    sections = read_sections(path, f"manuals/{name}")
    assert any("Clean the oven fan filter every week." in s.text for s in sections), sections


def test_another_format_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "oven.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0 an old binary .doc")
    with pytest.raises(SourceError, match=r"manuals/oven\.doc: manuals must be one of .*\.docx"):
        read_sections(path, "manuals/oven.doc")


def test_pdf_two_pages_keep_page_numbers_and_font_headings(tmp_path: Path) -> None:
    pdf = tmp_path / "hu40.pdf"
    make_pdf(pdf, PUMP_PDF)
    sections = read_sections(pdf, "hu40.pdf")
    assert [(s.page, s.path) for s in sections] == [
        (1, ("Hydraulic unit HU-40",)),
        (1, ("Hydraulic unit HU-40", "Oil temperature")),
        (2, ("Hydraulic unit HU-40", "Oil temperature")),  # the section carries over the page break
        (2, ("Hydraulic unit HU-40", "Pressure relief valve")),
    ]
    assert "Alarm H12 trips at 60 C." in sections[1].text
    assert sections[3].text == "Set the relief valve to 80 bar with the gauge on port P2."


def test_pdf_outline_gives_heading_paths(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain = tmp_path / "plain.pdf"
    make_pdf(plain, [[(11, "Introduction text.")], [(11, "Fuse F3 protects the heater.")]])
    writer = PdfWriter(clone_from=str(plain))
    chapter = writer.add_outline_item(title="Electrical", page_number=0)
    writer.add_outline_item(title="Fuses", page_number=1, parent=chapter)
    with_outline = tmp_path / "outline.pdf"
    with open(with_outline, "wb") as handle:
        writer.write(handle)
    sections = read_sections(with_outline, "outline.pdf")
    assert [(s.page, s.path, s.text) for s in sections] == [
        (1, ("Electrical",), "Introduction text."),
        (2, ("Electrical", "Fuses"), "Fuse F3 protects the heater."),
    ]


def test_broken_pdf_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4\nthis is not a pdf")
    with pytest.raises(SourceError, match=r"scan\.pdf"):
        read_sections(bad, "manuals/scan.pdf")


def test_html_heading_paths_without_scripts_or_navigation(tmp_path: Path) -> None:
    page = tmp_path / "lb3.html"
    page.write_text(HTML, encoding="utf-8")
    sections = {" > ".join(s.path): s.text for s in read_sections(page, "lb3.html")}
    assert list(sections) == [
        "Labeler LB-3",
        "Labeler LB-3 > Label sensor",
        "Labeler LB-3 > Label sensor > Calibration 校正",
        "Labeler LB-3 > Drive belt",
    ]
    assert sections["Labeler LB-3 > Label sensor"] == "The gap sensor reads the label web.\nClean it with a dry cloth."
    calibration = sections["Labeler LB-3 > Label sensor > Calibration 校正"]
    assert "按住 CAL 三秒，直到指示燈閃爍。" in calibration
    assert "L7 | Label not detected" in calibration
    everything = " ".join(sections.values())
    assert "tracking" not in everything and "Products" not in everything and "Copyright" not in everything


def test_html_in_big5_is_decoded(tmp_path: Path) -> None:
    page = tmp_path / "big5.htm"
    page.write_bytes('<html><head><meta charset="big5"></head><body><h1>馬達過熱</h1><p>檢查風扇。</p></body></html>'
                     .encode("cp950"))
    [section] = read_sections(page, "big5.htm")
    assert section.path == ("馬達過熱",) and section.text == "檢查風扇。"


def test_docx_heading_styles_become_paths(tmp_path: Path) -> None:
    path = tmp_path / "sw9.docx"
    make_docx(path)
    sections = [(" > ".join(s.path), s.text) for s in read_sections(path, "sw9.docx")]
    assert sections == [
        ("Wrapper SW-9 service manual", "Read the safety chapter before any work."),
        ("Wrapper SW-9 service manual > Film carriage", "The film carriage moves on two guide rails."),
        ("Wrapper SW-9 service manual > Film carriage > Film break 薄膜斷裂",
         "薄膜斷裂時，檢查預拉伸滾輪是否有異物。\n\nCode | Action\nW31 | Rethread the film"),
        ("Wrapper SW-9 service manual > Turntable", "Grease the turntable bearing every 500 hours."),
    ]


def test_not_a_docx_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "old.docx"
    bad.write_bytes(b"\xd0\xcf\x11\xe0 an old binary .doc")
    with pytest.raises(SourceError, match=r"old\.docx"):
        read_sections(bad, "manuals/old.docx")


def test_xlsx_code_table_in_canonical_columns(tmp_path: Path) -> None:
    from kb.source.codes import read_codes

    path = tmp_path / "codes.xlsx"
    make_xlsx(path, "Sheet1", [
        [" Code ", "TITLE", "Steps", "Severity", "Safety", "Lang"],
        ["E-203", "Belt slip", "1. Stop the line\n2. Check tension", "critical", "Lock out first", "en"],
        [203, "皮帶打滑", "停機 | 檢查張力", "warning", None, "zh-TW"],
    ])
    first, second = read_codes(path, "codes.xlsx", None, "en")
    assert (first.code, first.key, first.steps, first.safety, first.severity) == (
        "E-203", "E203", ("Stop the line", "Check tension"), ("Lock out first",), "critical")
    assert (second.code, second.steps, second.lang) == ("203", ("停機", "檢查張力"), "zh-TW")


# -- a whole source folder in every format, built for real ------------------------------------
def _source(root: Path) -> Path:
    source = root / "plant"
    for folder in ("codes", "records", "manuals/vendor"):
        (source / folder).mkdir(parents=True)
    make_xlsx(source / "codes" / "packing.xlsx", "codes", [
        ["code", "title", "steps", "severity", "machine_model"],
        ["H12", "Hydraulic oil too hot", "Stop the pump | Clean the cooler fins | Check the fan", "critical", "HU-40"],
        ["L7", "Label not detected", "Clean the gap sensor | Calibrate the sensor", "warning", ""],
    ])
    make_xlsx(source / "records" / "repairs.xlsx", "Sheet", [
        ["date", "machine_id", "machine_model", "code", "symptom", "action", "parts", "result", "technician",
         "duration_min"],
        [dt.datetime(2024, 3, 5), "HU-1", "HU-40", "H12", "oil 61 C", "cleaned cooler fins", "", "fixed", "Lin", 35.0],
        [dt.datetime(2024, 4, 9), "HU-1", "HU-40", "H12", "oil 62 C", "replaced fan", "fan 24V", "fixed", "Chen", 80],
    ])
    # A vendor's alarm list in its own layout, described by the mapping below.
    make_xlsx(source / "vendor_alarms.xlsx", "Alarms", [
        ["Alarm No", "Message", "Remedy text"],
        [31, "Film break", "Rethread the film. Check the pre-stretch rollers."],
    ])
    make_pdf(source / "manuals" / "hu40.pdf", PUMP_PDF)
    (source / "manuals" / "lb3.html").write_text(HTML, encoding="utf-8")
    make_docx(source / "manuals" / "vendor" / "sw9.docx")
    (source / "manuals" / "notes.txt").write_text("Night shift: the HU-40 cooler clogs with dust in summer.\n")
    (source / "kb.toml").write_text(
        'name = "Packing line"\ndefault_lang = "en"\n\n'
        '[[files]]\nmatch = "vendor_alarms.xlsx"\nrole = "codes"\nsheet = "Alarms"\nprefix = "W"\n'
        'severity = "warning"\nsteps_from = "description"\n'
        '[files.columns]\ncode = "Alarm No"\ntitle = "Message"\ndescription = "Remedy text"\n'
    )
    return source


def test_build_from_every_format_then_rebuild_embeds_nothing(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from kb.build import SourceSpec, build
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore

    source = _source(tmp_path)
    store = VersionStore(tmp_path / "kb")
    first = build([SourceSpec(source)], store, embedder)
    assert first.activated and first.documents == 7 and first.codes == 3 and first.records == 2
    assert first.embedded == first.chunks > 0 and not first.warnings

    kbase = KnowledgeBase(store.current_path(), embedder)
    try:
        h12 = kbase.lookup("h-12", machine_model="HU-40", lang="en").entry
        assert h12 is not None and h12.steps == ("Stop the pump", "Clean the cooler fins", "Check the fan")
        w31 = kbase.lookup("ｗ３１", lang="en").entry  # full-width, as a scanner in IME mode types it
        assert w31 is not None and w31.title == "Film break"
        assert w31.steps == ("Rethread the film.", "Check the pre-stretch rollers.")
        records, summary = kbase.history("H12", "HU-1")
        assert [r.date for r in records] == ["2024-04-09", "2024-03-05"] and records[0].parts == "fan 24V"
        assert {f.action for f in summary} == {"cleaned cooler fins", "replaced fan"}

        relief = kbase.search("relief valve setting bar", 3).passages[0]
        assert (relief.source, relief.page) == ("hu40.pdf", 2)
        assert relief.section == "Hydraulic unit HU-40 > Pressure relief valve"
        film = kbase.search("薄膜斷裂", 3).passages
        assert any(p.source == "sw9.docx" and p.section.endswith("Film break 薄膜斷裂") for p in film)
        sensor = kbase.search("label gap sensor", 5).passages
        assert any(p.source == "lb3.html" and p.section == "Labeler LB-3 > Label sensor" for p in sensor)
        assert any(p.source == "notes.txt" for p in kbase.search("cooler clogs with dust", 3).passages)
    finally:
        kbase.close()

    again = build([SourceSpec(source)], store, embedder)
    assert again.version == first.version + 1 and again.activated
    assert again.embedded == 0 and again.reused == first.chunks

    (source / "manuals" / "notes.txt").write_text("Day shift: the HU-40 gauge on P2 sticks when cold.\n")
    changed = build([SourceSpec(source)], store, embedder)
    assert changed.embedded == 1 and changed.reused == first.chunks - 1


def test_self_test_checks_the_built_version_against_its_sources(tmp_path: Path) -> None:
    """A version whose code rows or records differ from the source tables never becomes active."""
    import shutil
    import sqlite3

    from kb.build import SourceSpec, build
    from kb.errors import KBError
    from kb.selftest import self_test
    from kb.versions import DB_NAME, VersionStore

    source = _source(tmp_path)
    store = VersionStore(tmp_path / "kb")
    build([SourceSpec(source)], store, None)  # no vectors: the tables are what is checked here
    built = store.current_path()
    self_test(built, [SourceSpec(source)])

    def tampered(sql: str) -> Path:
        copy = tmp_path / f"tampered{len(list(tmp_path.glob('tampered*')))}"
        shutil.copytree(built, copy)
        conn = sqlite3.connect(copy / DB_NAME)
        with conn:
            assert conn.execute(sql).rowcount == 1, sql
        conn.close()
        return copy

    broken = {
        "UPDATE codes SET steps = '[\"Stop the pump\"]' WHERE code = 'H12'": r"code H12 \(packing\.xlsx.*looks up as",
        "UPDATE codes SET title = 'Film brake' WHERE code = 'W31'": r"code W31 \(vendor_alarms\.xlsx.*'Film brake'",
        "UPDATE codes SET key = 'L07' WHERE code = 'L7'": r"code L7 .*not found by lookup",
        "DELETE FROM codes WHERE code = 'L7'": r"3 code rows and 2 repair records, the new version 2 and 2",
        "UPDATE records SET action = 'tightened fan' WHERE action = 'replaced fan'":
            r"repair of H12 on HU-1 \(2024-04-09\) is missing from its history",
    }
    for sql, message in broken.items():
        with pytest.raises(KBError, match=message):
            self_test(tampered(sql), [SourceSpec(source)])
    # Without the sources, a stored row that its own code cannot find still fails.
    with pytest.raises(KBError, match="code L7 cannot be looked up"):
        self_test(tampered("UPDATE codes SET key = 'L07' WHERE code = 'L7'"))
    self_test(built)
