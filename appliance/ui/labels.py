"""Interface text in Traditional Chinese and English (F5 switches between them)."""

from __future__ import annotations

LANGS = ("zh-TW", "en")

LABELS: dict[str, dict[str, str]] = {
    "zh-TW": {
        "placeholder": "掃描或輸入錯誤代碼，或描述問題（例如 A01、E-203、皮帶異音）",
        "welcome": "請掃描或輸入機台的錯誤代碼，或用一句話描述問題，然後按 Enter。",
        "welcome_keys": "F1 已修復 · F2 未修復 · F3 呼叫技術人員 · F5 English · Esc 清除 · PgUp/PgDn 捲動",
        "unknown": "找不到此代碼", "suggest": "您是不是要找", "symptom": "症狀查詢",
        "steps": "標準排查步驟（工廠標準作業程序）", "safety": "安全注意",
        "history": "過去的處理方式", "recent": "最近紀錄", "times": "次",
        "generated": "AI 說明（非標準作業程序）", "waiting_model": "AI 說明產生中…",
        "model_off": "模型無法使用，請依照上方標準作業程序。", "sources": "參考資料", "page": "頁",
        "notices": "提示", "escalate": "建議呼叫技術人員", "parts": "可能需要的零件",
        "severity_info": "資訊", "severity_warning": "警告", "severity_critical": "嚴重",
        "key_fixed": "已修復", "key_not_fixed": "未修復", "key_call": "叫技術員",
        "key_lang": "English", "key_tech": "技術人員", "key_clear": "清除",
        "operator": "作業員", "operator_none": "未登錄（請掃描員工證）",
        "operator_set": "作業員已登錄：{op}",
        "alarms": "機台警報", "alarms_none": "目前沒有警報", "alarm_hint": "↑↓ 選擇 · Enter 開啟",
        "fb_saved": "已記錄：{verdict}", "fb_pending": "答案完成後會記錄：{verdict}",
        "fb_none": "請先查詢一個代碼", "fb_failed": "回饋無法儲存：{error}",
        "fb_dropped": "答案被取消，回饋未記錄",
        "verdict_fixed": "已修復", "verdict_not_fixed": "未修復", "verdict_call_technician": "呼叫技術人員",
        "call_sent": "已記錄呼叫技術人員，請通知班長或保養課。",
        "critical": "嚴重警報！請立即處理並注意安全",
        "failed": "發生問題：{message}（標準作業程序仍然有效）",
        "internal": "內部錯誤：{message}（標準作業程序仍然有效）",
        "no_exit": "此畫面無法直接離開。技術人員請按 F9 並輸入 PIN 碼。",
        "model": "模型", "model_loading": "載入中…", "model_disabled": "已關閉", "model_failed": "無法使用",
        "kb": "知識庫", "kb_none": "無", "serial": "序列埠", "serial_none": "未設定",
        "pin_title": "技術人員模式", "pin_prompt": "請輸入 PIN 碼後按 Enter（Esc 取消）",
        "pin_wrong": "PIN 碼錯誤（還剩 {left} 次）", "pin_locked": "輸入錯誤次數過多，已鎖定 {seconds} 秒",
        "pin_unset": "尚未設定 PIN 碼，請在終端機執行 `shifu kiosk set-pin`",
        "tech_title": "技術人員模式", "tech_kb": "知識庫", "tech_model": "模型", "tech_serial": "序列埠",
        "tech_db": "作業資料庫", "tech_bundle": "USB 匯入 / 回復 / 匯出：將於套件功能完成後提供",
        "tech_keys": "Esc 登出 · F10 結束 Shifu", "tech_logout": "技術人員模式已登出",
        "tech_idle": "閒置 {seconds} 秒後自動登出",
        "version": "版本", "active": "使用中", "versions": "所有版本", "counts": "內容",
        "device": "裝置", "exists": "已連接", "missing": "找不到",
        "lang_switched": "介面與回答語言：中文",
    },
    "en": {
        "placeholder": "Scan or type an error code, or describe the problem (e.g. A01, E-203, belt squeals)",
        "welcome": "Scan or type the machine's error code, or describe the problem in a few words, then press Enter.",
        "welcome_keys": "F1 fixed · F2 not fixed · F3 call technician · F5 中文 · Esc clear · PgUp/PgDn scroll",
        "unknown": "Code not found", "suggest": "Did you mean", "symptom": "Symptom search",
        "steps": "Standard procedure (plant SOP)", "safety": "Safety",
        "history": "What fixed this before", "recent": "Recent", "times": "x",
        "generated": "AI explanation (not the standard procedure)", "waiting_model": "AI explanation coming…",
        "model_off": "Model unavailable; follow the standard procedure above.", "sources": "Sources", "page": "p.",
        "notices": "Notices", "escalate": "Call a technician", "parts": "Parts that may be needed",
        "severity_info": "info", "severity_warning": "warning", "severity_critical": "CRITICAL",
        "key_fixed": "Fixed", "key_not_fixed": "Not fixed", "key_call": "Call tech",
        "key_lang": "中文", "key_tech": "Technician", "key_clear": "Clear",
        "operator": "Operator", "operator_none": "none (scan your badge)",
        "operator_set": "Operator signed in: {op}",
        "alarms": "Machine alarms", "alarms_none": "No alarms", "alarm_hint": "↑↓ select · Enter open",
        "fb_saved": "Recorded: {verdict}", "fb_pending": "Will be recorded when the answer is complete: {verdict}",
        "fb_none": "Ask about a code first", "fb_failed": "Feedback could not be stored: {error}",
        "fb_dropped": "The answer was cancelled; feedback not recorded",
        "verdict_fixed": "fixed", "verdict_not_fixed": "not fixed", "verdict_call_technician": "call technician",
        "call_sent": "Technician call recorded; tell your supervisor or maintenance.",
        "critical": "CRITICAL alarm! Act now and mind your safety",
        "failed": "Problem: {message} (the standard procedure still applies)",
        "internal": "Internal error: {message} (the standard procedure still applies)",
        "no_exit": "This screen cannot be left. Technicians: press F9 and enter the PIN.",
        "model": "model", "model_loading": "loading…", "model_disabled": "off", "model_failed": "unavailable",
        "kb": "KB", "kb_none": "none", "serial": "serial", "serial_none": "none",
        "pin_title": "Technician mode", "pin_prompt": "Enter the PIN and press Enter (Esc cancels)",
        "pin_wrong": "Wrong PIN ({left} tries left)", "pin_locked": "Too many wrong PINs; locked for {seconds} s",
        "pin_unset": "No PIN is set; run `shifu kiosk set-pin` in a terminal",
        "tech_title": "Technician mode", "tech_kb": "Knowledge base", "tech_model": "Model",
        "tech_serial": "Serial ports", "tech_db": "Operational database",
        "tech_bundle": "USB import / rollback / export: available once the bundle feature lands",
        "tech_keys": "Esc log out · F10 exit Shifu", "tech_logout": "Technician mode logged out",
        "tech_idle": "Logs out after {seconds} s idle",
        "version": "version", "active": "active", "versions": "versions", "counts": "contents",
        "device": "device", "exists": "connected", "missing": "missing",
        "lang_switched": "Interface and answer language: English",
    },
}


def label(lang: str, key: str, **values: object) -> str:
    """The text for `key` in `lang` (English when missing), with `{name}` fields filled in."""
    table = LABELS.get(lang, LABELS["en"])
    text = table.get(key) or LABELS["en"].get(key) or key
    return text.format(**values) if values else text


def other_lang(lang: str) -> str:
    """The language F5 switches to."""
    return "en" if lang == "zh-TW" else "zh-TW"
