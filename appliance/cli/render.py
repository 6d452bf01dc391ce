"""Readable text output of an answer for `shifu ask`, printed as the events arrive."""

from __future__ import annotations

from typing import Any, TextIO

from appliance.engine.types import Answer, CodeFound, Done, Event, HistoryFound, LikelyCodes, Partial, PassagesFound

LABELS = {
    "zh-TW": {
        "unknown": "找不到此代碼", "suggest": "您是不是要找", "steps": "標準排查步驟（工廠標準作業程序）",
        "safety": "安全注意", "history": "過去的處理方式", "times": "次", "passages": "參考資料",
        "generated": "AI 說明（非標準作業程序）", "symptom": "症狀查詢", "model_off": "模型無法使用",
        "severity": {"info": "資訊", "warning": "警告", "critical": "嚴重"}, "recent": "最近紀錄",
        "ambiguous": "依機型不同，請指定機台（--machine 或 --model）", "several": "輸入中有多個代碼，請選擇一個",
        "likely": "可能是", "similar": "相似的過去維修", "fixed": "修好",
    },
    "en": {
        "unknown": "Code not found", "suggest": "Did you mean", "steps": "Standard procedure (plant SOP)",
        "safety": "Safety", "history": "What fixed this before", "times": "x", "passages": "Sources",
        "generated": "AI explanation (not the standard procedure)", "symptom": "Symptom search",
        "model_off": "Model unavailable", "severity": {"info": "info", "warning": "warning", "critical": "CRITICAL"},
        "recent": "Recent",
        "ambiguous": "One procedure per machine model; name the machine (--machine or --model)",
        "several": "The entry holds several codes; choose one", "likely": "Likely", "similar": "Similar past repairs",
        "fixed": "fixed",
    },
}


def labels(lang: str) -> dict[str, Any]:
    return LABELS.get(lang, LABELS["en"])


class TextPrinter:
    """Prints each event as it comes; the generated answer is re-rendered as it streams."""

    def __init__(self, out: TextIO, lang: str) -> None:
        self.out = out
        self.lang = lang
        self.shown_summary = 0
        self.shown_steps = 0

    def show(self, event: Event, query: str) -> None:
        """Print one engine event of the answer to `query` (raw tokens and failures are not printed)."""
        if isinstance(event, CodeFound):
            self.code(event, query)
        elif isinstance(event, LikelyCodes):
            self.likely(event)
        elif isinstance(event, HistoryFound):
            self.history(event)
        elif isinstance(event, PassagesFound):
            self.passages(event)
        elif isinstance(event, Partial):
            self.partial(event.generated)
        elif isinstance(event, Done):
            self.done(event.answer)

    def w(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def code(self, event: CodeFound, query: str) -> None:
        t = labels(self.lang)
        entry = event.entry
        if event.ambiguous:
            self.w(f"? {t['ambiguous']}:")
            for row in event.candidates:
                self.w(f"  {row.machine_model}: {row.code}  {row.title}")
            return
        if event.codes_in_entry:
            self.w(f"? {t['several']}: {', '.join(event.codes_in_entry)}")
            return
        if entry is None:
            if event.normalized:
                self.w(f"✗ {t['unknown']}: {query}")
                if event.suggestions:
                    self.w(f"  {t['suggest']}: {', '.join(event.suggestions)}")
            else:
                self.w(f"{t['symptom']}: {query}")
            return
        severity = t["severity"].get(entry.severity, entry.severity)
        model = f" · {entry.machine_model}" if entry.machine_model else ""
        self.w(f"■ {entry.code}  {entry.title}  [{severity}]{model}")
        self.w(f"{t['steps']}:")
        for i, step in enumerate(entry.steps, start=1):
            self.w(f"  {i}. {step}")
        if entry.safety:
            self.w(f"{t['safety']}:")
            for note in entry.safety:
                self.w(f"  ⚠ {note}")

    def likely(self, event: LikelyCodes) -> None:
        """For a symptom: the best likely code's procedure, labelled as likely, then the others."""
        t = labels(self.lang)
        for i, item in enumerate(event.codes):
            entry = item.entry
            model = f" · {entry.machine_model}" if entry.machine_model else ""
            self.w(f"{t['likely']} {entry.code}  {entry.title}{model}  ({item.score:.2f})")
            if i == 0:
                for n, step in enumerate(entry.steps, start=1):
                    self.w(f"  {n}. {step}")
                for note in entry.safety:
                    self.w(f"  ⚠ {note}")
        if event.repairs:
            self.w(f"{t['similar']}:")
            for repair in event.repairs:
                r = repair.record
                self.w(f"  • {r.code} {r.date} {r.machine_id}: {r.symptom} → {r.action} "
                       f"({t['fixed']} {repair.fixed}/{repair.total})")

    def history(self, event: HistoryFound) -> None:
        t = labels(self.lang)
        if not event.summary:
            return
        self.w(f"{t['history']}:")
        for fix in event.summary:
            self.w(f"  • {fix.action} ({fix.count}{t['times']}, {fix.last_date})")

    def passages(self, event: PassagesFound) -> None:
        t = labels(self.lang)
        if event.passages:
            self.w(f"{t['passages']}:")
            for p in event.passages:
                page = f" p.{p.page}" if p.page else ""
                models = f" [{', '.join(p.machine_models)}]" if len(p.machine_models) > 1 else ""
                self.w(f"  [{p.n}] {p.source} > {p.section}{page}{models}")
        self.w(f"{t['generated']}:")

    def partial(self, generated: dict[str, Any]) -> None:
        """A guarded partial answer: print what is final (a step once the next one has started)."""
        steps = generated.get("steps") or []
        summary = str(generated.get("summary") or "")
        if summary and not self.shown_summary and steps:
            self.w(f"  {summary}")
            self.shown_summary = 1
        for step in steps[:-1][self.shown_steps :]:
            self._step(step)

    def _step(self, step: Any) -> None:
        self.shown_steps += 1
        if isinstance(step, dict):
            marks = "".join(f"[{n}]" for n in step.get("cites", []) if isinstance(n, int))
            self.w(f"  {self.shown_steps}. {step.get('text', '')} {marks}".rstrip())

    def done(self, answer: Answer) -> None:
        generated = answer.generated
        if generated:
            if not self.shown_summary and generated.get("summary"):
                self.w(f"  {generated['summary']}")
            for step in generated.get("steps", [])[self.shown_steps :]:
                self._step(step)
            for note in generated.get("safety", []):
                self.w(f"  ⚠ {note}")
            if generated.get("parts"):
                self.w("  " + ", ".join(generated["parts"]))
        elif not answer.model_available and not answer.refused:
            self.w(f"  ({labels(self.lang)['model_off']})")
        for notice in answer.notices:
            self.w(f"ⓘ {notice}")
