#!/usr/bin/env python3
"""Generate the sample plant's repair records (kb/sample/records/repair_records.csv).

The records are invented, but shaped like a real Taiwanese plant's maintenance log:
mostly Traditional Chinese, with English rows written by foreign technicians; every
code has a pool of symptoms and a pool of fixes, and the usual fix for a code clearly
dominates so that a "what fixed this before" summary means something.

Deterministic (``random.Random(42)``), standard library only. Run from anywhere:

    python tools/gen_sample_records.py [--out PATH] [--count N]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

Fix = dict[str, Any]
Pool = tuple[str, str, int, list[str], list[str], list[Fix]]
T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "kb" / "sample" / "records" / "repair_records.csv"
HEADER = [
    "date",
    "machine_id",
    "machine_model",
    "code",
    "symptom",
    "action",
    "parts",
    "result",
    "technician",
    "duration_min",
]
START = dt.date(2023, 3, 1)
END = dt.date(2025, 10, 31)

MACHINES = {
    "CV-200": [("CV-01", 1.0), ("CV-02", 1.4), ("CV-03", 1.0), ("CV-04", 0.8)],
    "IM-850": [("IM-01", 1.2), ("IM-02", 1.0), ("IM-03", 0.9)],
    "VMC-640": [("MC-01", 1.0), ("MC-02", 1.1), ("MC-03", 0.9)],
}

# name, language, weight, first day, last day (contract periods of the foreign technicians)
TECHNICIANS = [
    ("陳師傅", "zh-TW", 3.0, START, END),
    ("林志明", "zh-TW", 3.0, START, END),
    ("王建華", "zh-TW", 2.0, START, END),
    ("黃俊傑", "zh-TW", 2.0, START, END),
    ("李國榮", "zh-TW", 1.5, START, END),
    ("張雅婷", "zh-TW", 1.2, dt.date(2023, 9, 1), END),
    ("吳文雄", "zh-TW", 1.0, START, dt.date(2025, 3, 31)),
    ("Tran Van Minh", "en", 1.5, START, END),
    ("Joel Santos", "en", 0.8, START, dt.date(2024, 6, 30)),
    ("Nguyen Thi Lan", "en", 0.8, dt.date(2024, 2, 1), END),
    ("Somchai Wongsa", "en", 0.6, dt.date(2023, 7, 1), END),
]


def act(
    weight: float,
    zh: str,
    en: str,
    parts_zh: str = "",
    parts_en: str = "",
    fix: float = 0.9,
    dmin: int = 15,
    dmax: int = 45,
) -> Fix:
    """One way a code was fixed before; ``fix`` is how often it worked."""
    return {"w": weight, "zh": zh, "en": en, "pzh": parts_zh, "pen": parts_en, "fix": fix, "d": (dmin, dmax)}


# Per code: model ("" = every model), relative frequency, symptoms (zh, en), fixes.
# The tables stay hand-aligned, one fix per line, so they read like a logbook.
# fmt: off
POOLS: list[Pool] = [
    # ------------------------------------------------------------ CV-200
    ("A01", "CV-200", 10,
     ["輸送帶突然停止，熱動繼電器跳脫", "馬達過載跳機，面板顯示A01", "啟動不到一分鐘就跳過載",
      "滿載時馬達很燙然後停機", "早班開機時跳過載"],
     ["Conveyor tripped on motor overload", "Thermal relay tripped after a few minutes",
      "Motor very hot, line stopped"],
     [act(0.55, "清除卡在尾輪的異物後復歸熱動繼電器", "Removed debris jammed at tail pulley, reset thermal relay", fix=0.95, dmin=15, dmax=40),
      act(0.20, "上游投料過多，與班長協調降低投料量後復歸", "Upstream overfeeding, agreed lower feed rate with shift leader, reset", fix=0.85, dmin=10, dmax=25),
      act(0.15, "減速機入力軸承卡死，更換軸承", "Gearbox input bearing seized, replaced bearing", "軸承 6205ZZ", "bearing 6205ZZ", 0.9, 90, 180),
      act(0.10, "馬達絕緣值偏低，通知電氣課送修馬達", "Motor insulation low, electrical section took motor for repair", fix=0.3, dmin=60, dmax=120)]),
    ("A02", "CV-200", 22,
     ["皮帶偏向操作側，邊緣磨到機架", "皮帶往右偏約3公分", "皮帶邊緣起毛", "皮帶跑偏，摩擦有焦味",
      "回程皮帶偏到一邊"],
     ["Belt running off to the motor side", "Belt edge rubbing on frame", "Belt drifting left about 20 mm"],
     [act(0.60, "清除尾輪積料並調整尾輪張緊螺桿", "Cleaned tail pulley and adjusted take-up screws", fix=0.9, dmin=20, dmax=45),
      act(0.20, "更換卡死的回程托輥", "Replaced seized return idler", "托輥 R-89", "idler R-89", 0.9, 30, 60),
      act(0.10, "皮帶接頭歪斜，重新裁切接頭", "Belt splice not square, re-spliced belt", "接頭材料 SK-600", "splice kit SK-600", 0.95, 180, 300),
      act(0.10, "調整托輥架角度", "Re-aligned idler frame", fix=0.7, dmin=30, dmax=60)]),
    ("A03", "CV-200", 24,
     ["皮帶打滑，速度感測器報警", "啟動時皮帶尖叫，驅動滾筒空轉", "滿載時皮帶速度變慢",
      "驅動滾筒處有黑色粉末", "皮帶一啟動就嘰嘰叫"],
     ["Belt squealing at start-up, drive pulley spinning", "Belt slows down under load",
      "Slip alarm after oil leak near drive"],
     [act(0.60, "清潔驅動滾筒油污並重新調整皮帶張力", "Degreased drive pulley and re-tensioned belt", fix=0.9, dmin=30, dmax=60),
      act(0.15, "驅動滾筒包膠磨平，更換包膠", "Drive pulley lagging worn smooth, relagged pulley", "包膠 LG-8", "lagging LG-8", 0.95, 180, 360),
      act(0.15, "減速機油封漏油滴到皮帶，更換油封", "Gearbox oil seal leaking onto belt, replaced seal", "油封 TC35x52x7", "oil seal TC35x52x7", 0.9, 60, 120),
      act(0.10, "速度感測器距離過大造成誤報，重新調整", "False slip alarm, reset speed sensor gap", fix=0.85, dmin=15, dmax=30)]),
    ("A04", "CV-200", 12,
     ["張力開關動作，面板顯示A04", "皮帶鬆弛，回程段下垂", "皮帶張力不夠，偶爾打滑", "尾輪張緊螺桿已經鎖到底"],
     ["Tension switch tripped", "Belt sagging on return side"],
     [act(0.60, "兩側張緊螺桿各鎖緊一圈，撓度回到規格", "Tightened both take-up screws one turn, deflection back in spec", fix=0.9, dmin=20, dmax=40),
      act(0.20, "張緊行程用盡，皮帶裁短重新接頭", "Take-up travel used up, shortened and re-spliced belt", "接頭材料 SK-600", "splice kit SK-600", 0.95, 180, 300),
      act(0.10, "皮帶老化伸長，更換新皮帶", "Belt stretched with age, replaced belt", "皮帶 B-1200", "belt B-1200", 1.0, 240, 420),
      act(0.10, "張力開關擺臂鬆脫，重新固定", "Tension switch arm loose, refastened", fix=0.9, dmin=15, dmax=30)]),
    ("A05", "CV-200", 5,
     ["拉繩開關動作，輸送帶緊急停止", "有人誤拉拉繩", "拉繩開關自己跳，現場沒人拉", "清潔人員拉繩停機"],
     ["Pull cord tripped, nobody at the line", "Operator pulled cord when a carton fell on the belt"],
     [act(0.55, "確認現場安全後復位拉繩開關", "Checked line safe, reset pull-cord switch", fix=1.0, dmin=5, dmax=15),
      act(0.25, "拉繩鬆弛造成誤動作，重新調整拉繩張力", "Slack cord caused false trips, re-tensioned pull cord", fix=0.9, dmin=20, dmax=40),
      act(0.20, "拉繩開關內部進水，更換開關", "Water inside pull-cord switch, replaced switch", "拉繩開關 PCS-2", "pull-cord switch PCS-2", 0.95, 40, 80)]),
    ("A06", "CV-200", 8,
     ["變頻器顯示OC跳脫", "變頻器OH過熱停機", "減速停止時跳OV", "變頻器故障，輸送帶無法啟動"],
     ["Inverter trips OC on start", "Inverter shows OH, fan not running"],
     [act(0.50, "清潔變頻器散熱片並更換散熱風扇", "Cleaned heat sink and replaced inverter fan", "散熱風扇 FAN-60", "cooling fan FAN-60", 0.9, 30, 60),
      act(0.25, "加長減速時間後復歸", "Lengthened deceleration time and reset", fix=0.8, dmin=15, dmax=30),
      act(0.15, "馬達接線端子鬆脫，重新壓接鎖緊", "Loose motor terminal, re-crimped and tightened", fix=0.9, dmin=30, dmax=50),
      act(0.10, "變頻器損壞，通知電氣課更換", "Inverter failed, electrical section to replace it", "變頻器 VF-37", "inverter VF-37", 0.4, 120, 240)]),
    ("A07", "CV-200", 9,
     ["速度感測器無訊號，輸送帶被停機", "尾輪感測器燈不閃", "皮帶有在轉但面板說無脈波"],
     ["Speed sensor no pulse though belt moving", "Sensor LED off"],
     [act(0.60, "清除感測頭鐵屑並調整感測距離", "Cleaned chips off sensor face and reset gap", fix=0.9, dmin=15, dmax=30),
      act(0.25, "更換近接開關", "Replaced proximity sensor", "近接開關 PS-12", "proximity sensor PS-12", 0.95, 20, 40),
      act(0.15, "感測器電纜被壓斷，重新配線", "Sensor cable crushed, rewired", "電纜 4芯 3m", "4-core cable 3 m", 0.95, 40, 90)]),
    ("A08", "CV-200", 10,
     ["出料口堵料，輸送帶自動停止", "紙箱卡在出料溜槽", "出料口堆料報警", "下游包裝機停了造成堵料"],
     ["Jam at discharge, cartons piled up", "Discharge chute blocked"],
     [act(0.60, "清除出料口堆積物料後依序啟動", "Cleared material at discharge, restarted in sequence", fix=0.95, dmin=10, dmax=25),
      act(0.20, "擦拭堵料光電開關鏡面", "Cleaned jam photo sensor lens", fix=0.85, dmin=5, dmax=15),
      act(0.10, "溜槽變形，整形並加焊補強", "Chute bent, straightened and reinforced", fix=0.9, dmin=90, dmax=180),
      act(0.10, "刮板磨損，更換刮板", "Replaced worn scraper blade", "刮板 SC-600", "scraper blade SC-600", 0.9, 40, 80)]),
    ("A09", "CV-200", 5,
     ["減速機外殼很燙，溫度開關跳脫", "減速機溫度高，有油燒焦味", "夏天午後減速機過熱"],
     ["Gearbox too hot to touch", "Gearbox temperature alarm in the afternoon"],
     [act(0.55, "齒輪油不足，補充齒輪油", "Gear oil low, topped up", "齒輪油 VG220 1L", "gear oil VG220 1 L", 0.9, 20, 40),
      act(0.25, "齒輪油變黑，更換齒輪油", "Gear oil dark, drained and refilled", "齒輪油 VG220 4L", "gear oil VG220 4 L", 0.95, 60, 90),
      act(0.20, "通氣塞堵塞，清洗通氣塞", "Breather blocked, cleaned breather", fix=0.85, dmin=15, dmax=30)]),
    ("A10", "CV-200", 4,
     ["24V電壓低，感測器訊號亂跳", "控制電源警報，人機畫面閃爍", "下雨後控制電源異常"],
     ["24 V supply dropping to 20 V", "Control voltage low alarm"],
     [act(0.50, "感測器電纜破皮短路，包覆修補", "Sensor cable insulation damaged and shorting, repaired", fix=0.9, dmin=40, dmax=80),
      act(0.30, "更換24V電源供應器", "Replaced 24 V power supply", "電源供應器 PSU-24", "power supply PSU-24", 0.95, 30, 60),
      act(0.20, "控制箱進水，烘乾並更換門封條", "Water in control box, dried out and replaced door gasket", "門封條 GK-1", "door gasket GK-1", 0.85, 60, 120)]),
    ("A11", "CV-200", 8,
     ["尾輪軸承異音，振動大", "驅動端軸承座發燙", "軸承有喀喀聲", "托輥有異音"],
     ["Tail bearing growling", "Drive-end bearing running hot and noisy"],
     [act(0.55, "更換尾輪軸承", "Replaced tail pulley bearing", "軸承座 UCP205", "bearing unit UCP205", 0.95, 90, 150),
      act(0.25, "軸承座螺絲鬆動，重新鎖緊並補潤滑脂", "Bearing housing bolts loose, retightened and regreased", fix=0.85, dmin=20, dmax=40),
      act(0.20, "托輥軸承損壞，更換托輥", "Idler bearing failed, replaced idler", "軸承 6204ZZ x2", "bearing 6204ZZ x2", 0.9, 30, 60)]),
    ("A12", "CV-200", 6,
     ["潤滑週期到，面板提示A12", "人機顯示保養提醒"],
     ["Lube reminder on HMI"],
     [act(0.85, "依潤滑表注油並重設計時器", "Greased per chart and reset timer", "潤滑脂 NLGI2", "grease NLGI 2", 1.0, 20, 40),
      act(0.15, "注油嘴堵塞，更換注油嘴後注油", "Grease nipple blocked, replaced nipple then greased", "注油嘴 M6", "grease nipple M6", 1.0, 30, 50)]),
    ("E-001", "CV-200", 4,
     ["輸送帶緊急停止按鈕被按下", "操作員按緊急停止，物料掉落", "緊急停止無法復歸"],
     ["E-stop pressed at loading station", "E-stop pressed, cannot reset"],
     [act(0.70, "確認原因已排除，釋放緊急停止按鈕並復歸", "Confirmed cause cleared, released E-stop and reset", fix=1.0, dmin=5, dmax=15),
      act(0.30, "緊急停止按鈕接點不良，更換接點模組", "E-stop contact block faulty, replaced contact block", "接點模組 NC-1", "contact block NC-1", 0.95, 30, 60)]),
    # ------------------------------------------------------------ IM-850
    ("E-001", "IM-850", 4,
     ["射出機緊急停止", "取件時手套被夾，按下緊急停止", "緊急停止後油壓馬達無法啟動"],
     ["E-stop hit during mould change", "E-stop pressed when part stuck in mould"],
     [act(0.70, "排除卡件並確認安全，釋放緊急停止後手動開模", "Cleared stuck part, released E-stop, opened mould in manual", fix=1.0, dmin=10, dmax=25),
      act(0.30, "緊急停止迴路安全繼電器故障，更換", "Safety relay in E-stop circuit faulty, replaced", "安全繼電器 SR-24", "safety relay SR-24", 0.9, 60, 120)]),
    ("E-201", "IM-850", 18,
     ["第二區升溫很慢，溫度上不去", "料管第三區溫度一直掉", "加熱圈斷線警報", "開機升溫兩小時第一區還沒到溫",
      "加熱圈有燒焦痕跡"],
     ["Zone 2 not heating", "Heater band alarm on zone 3", "Barrel zone stays cold after warm-up"],
     [act(0.60, "量測加熱圈電阻無窮大，更換加熱圈", "Heater band open (infinite ohms), replaced band", "加熱圈 HB-35", "heater band HB-35", 0.95, 60, 120),
      act(0.20, "加熱圈接線端子氧化鬆脫，重新壓接", "Heater terminal oxidised and loose, re-crimped", "壓接端子 R2-4", "crimp terminal R2-4", 0.9, 30, 60),
      act(0.20, "固態繼電器不導通，更換SSR", "SSR not switching, replaced SSR", "固態繼電器 SSR-40", "solid-state relay SSR-40", 0.9, 30, 60)]),
    ("E-202", "IM-850", 12,
     ["溫度顯示跳來跳去", "第一區溫度顯示999", "熱電偶異常，溫度讀值忽高忽低", "料溫顯示比實際低很多"],
     ["Zone temperature jumping 30 degrees", "Display shows max temperature on zone 1"],
     [act(0.60, "更換熱電偶", "Replaced thermocouple", "熱電偶 TC-J150", "thermocouple TC-J150", 0.95, 30, 60),
      act(0.25, "熱電偶沒插到底，重新插入並固定", "Thermocouple not seated, reinserted and secured", fix=0.9, dmin=10, dmax=20),
      act(0.15, "補償導線被夾破，更換補償導線", "Extension wire pinched, replaced", "補償導線 J型 2m", "J-type extension wire 2 m", 0.9, 40, 80)]),
    ("E-203", "IM-850", 6,
     ["料管第二區超溫，成品有黑點", "溫度超過設定50度", "料管過熱有焦味"],
     ["Zone 3 overshoot, burnt smell", "Barrel overheat, black specks in parts"],
     [act(0.60, "固態繼電器短路持續加熱，更換SSR並對空射出清料", "SSR failed short, replaced SSR and purged barrel", "固態繼電器 SSR-40", "solid-state relay SSR-40", 0.95, 60, 120),
      act(0.25, "溫度設定被誤改，恢復原設定並清料", "Setpoint changed by mistake, restored and purged", fix=0.9, dmin=20, dmax=40),
      act(0.15, "熱電偶脫出量到空氣溫度，重新固定", "Thermocouple pulled out reading air temperature, refitted", fix=0.85, dmin=20, dmax=40)]),
    ("E-204", "IM-850", 9,
     ["液壓油溫到58度停機", "下午油溫過高", "油冷卻器出水不冷"],
     ["Oil temperature alarm at 57 C", "Hydraulic oil running hot, cycle slows"],
     [act(0.55, "清洗油冷卻器水垢", "Descaled oil cooler", fix=0.9, dmin=90, dmax=150),
      act(0.25, "冷卻水閥門半關，全開後油溫恢復", "Cooling water valve half closed, opened fully", fix=0.95, dmin=10, dmax=20),
      act(0.20, "冷卻水塔風扇故障，通知廠務維修", "Cooling tower fan failed, reported to facilities", fix=0.3, dmin=30, dmax=60)]),
    ("E-205", "IM-850", 5,
     ["油位過低警報", "地上有油漬，油箱油位下降", "射座油缸漏油"],
     ["Oil level alarm, oil on floor under machine"],
     [act(0.55, "更換漏油接頭O型環並補充液壓油", "Replaced leaking fitting O-ring and topped up oil", "O型環 P22; 液壓油 VG46 20L", "O-ring P22; hydraulic oil VG46 20 L", 0.9, 60, 120),
      act(0.25, "油管破裂，更換高壓油管", "Burst hose, replaced high-pressure hose", "高壓油管 H-12", "hydraulic hose H-12", 0.95, 90, 150),
      act(0.20, "射座油缸油封漏油，通知原廠更換油封", "Carriage cylinder seal leaking, vendor called for seal kit", fix=0.3, dmin=120, dmax=240)]),
    ("E-206", "IM-850", 9,
     ["合模到一半停住，鎖模未到位", "換模後一直鎖不到位", "模具夾到料頭無法合模"],
     ["Clamp won't lock after mould change", "Mould halves not closing fully"],
     [act(0.55, "換模後模厚未調整，重新調整模厚", "Mould height not adjusted after change, readjusted", fix=0.95, dmin=30, dmax=60),
      act(0.25, "清除分模面殘留料頭", "Removed sprue stuck on parting line", fix=0.95, dmin=10, dmax=20),
      act(0.20, "鎖模到位近接開關鬆動，重新調整", "Clamp proximity switch loose, readjusted", fix=0.9, dmin=20, dmax=40)]),
    ("E-207", "IM-850", 8,
     ["頂針退不回來", "頂出板卡住", "成品卡在頂針上，頂針未退"],
     ["Ejector stuck forward", "Ejector retract alarm every few shots"],
     [act(0.55, "頂針缺潤滑，清潔頂針並上高溫油脂", "Ejector pins dry, cleaned and applied high-temp grease", "高溫油脂", "high-temperature grease", 0.9, 30, 60),
      act(0.25, "頂針彎曲，更換頂針", "Bent ejector pin, replaced", "頂針 EP-6x150", "ejector pin EP-6x150", 0.95, 60, 120),
      act(0.20, "頂出退回限位開關故障，更換", "Ejector retract limit switch faulty, replaced", "限位開關 LS-21", "limit switch LS-21", 0.9, 30, 60)]),
    ("E-208", "IM-850", 6,
     ["安全門關了還是顯示未關", "安全門未關警報，無法合模", "後安全門開關鬆脫"],
     ["Gate closed but alarm stays", "Rear gate alarm intermittent"],
     [act(0.55, "調整安全門限位開關位置", "Readjusted gate limit switch", fix=0.9, dmin=15, dmax=30),
      act(0.30, "安全門限位開關損壞，更換", "Gate limit switch broken, replaced", "限位開關 LS-21", "limit switch LS-21", 0.95, 30, 60),
      act(0.15, "滑軌卡異物，清潔滑軌", "Debris in gate rail, cleaned", fix=0.9, dmin=10, dmax=20)]),
    ("E-209", "IM-850", 16,
     ["計量時間變長，最後逾時", "螺桿轉但不進料", "料斗缺料計量逾時", "入料口結塊，計量不到位", "乾燥機沒送料"],
     ["Screw turns but doesn't recover", "Recovery timeout, hopper empty", "Feed throat bridged"],
     [act(0.55, "入料口結塊架橋，清除結塊並確認入料口冷卻水", "Feed throat bridged, cleared and checked throat cooling water", fix=0.9, dmin=20, dmax=40),
      act(0.25, "乾燥機送料管堵塞，清通後恢復送料", "Dryer conveying line blocked, cleared", fix=0.9, dmin=15, dmax=30),
      act(0.10, "背壓設定過高，調回標準條件", "Back pressure set too high, restored standard settings", fix=0.85, dmin=10, dmax=20),
      act(0.10, "止逆環磨損，通知保養課拆螺桿更換", "Check ring worn, maintenance pulled screw to replace it", "止逆環 CR-40", "check ring CR-40", 0.8, 240, 480)]),
    ("E-210", "IM-850", 8,
     ["射出壓力突然升高，短射", "射壓曲線跟之前不一樣", "射出壓力不穩，有毛邊"],
     ["Injection pressure spikes, short shots", "Pressure curve unstable"],
     [act(0.55, "噴嘴冷料堵塞，清除噴嘴", "Cold slug in nozzle, cleared nozzle", fix=0.9, dmin=20, dmax=40),
      act(0.25, "模具排氣孔堵塞，清潔排氣", "Mould vents clogged, cleaned vents", fix=0.9, dmin=40, dmax=80),
      act(0.20, "壓力感測器讀值漂移，通知保養課校正", "Pressure transducer drift, maintenance to recalibrate", fix=0.6, dmin=60, dmax=120)]),
    ("E-211", "IM-850", 5,
     ["噴嘴溫度一直偏低", "噴嘴冷料，第一模常常短射", "噴嘴溫度到不了設定"],
     ["Nozzle temperature lagging 20 degrees"],
     [act(0.60, "更換噴嘴加熱圈", "Replaced nozzle heater band", "加熱圈 HB-20", "heater band HB-20", 0.95, 30, 60),
      act(0.25, "開啟射座後退功能，減少噴嘴接觸冷模時間", "Enabled carriage retract to cut nozzle contact time", fix=0.85, dmin=10, dmax=20),
      act(0.15, "噴嘴熱電偶鬆脫，重新鎖緊", "Nozzle thermocouple loose, retightened", fix=0.9, dmin=10, dmax=20)]),
    ("E-212", "IM-850", 9,
     ["模具冷卻水流量不足警報", "成品變形，週期變長", "分水器流量計有一路不動"],
     ["Mould water flow alarm", "One cooling circuit showing zero flow"],
     [act(0.55, "快速接頭沒插好，重新插妥", "Quick coupling not engaged, reconnected", fix=0.95, dmin=5, dmax=15),
      act(0.25, "清洗冷卻水過濾器", "Cleaned cooling water strainer", fix=0.9, dmin=20, dmax=40),
      act(0.20, "模具水路結垢，拆模除垢", "Mould channels scaled, removed mould and descaled", fix=0.9, dmin=180, dmax=300)]),
    # ------------------------------------------------------------ VMC-640
    ("AL-1001", "VMC-640", 8,
     ["X軸過載警報，重切削時發生", "Y軸移動卡卡的之後跳過載", "面銑時Z軸過載"],
     ["X axis overload during heavy facing", "Y overload after crash"],
     [act(0.55, "降低進給與切深後重新加工", "Reduced feed and depth of cut, rerun OK", fix=0.9, dmin=15, dmax=30),
      act(0.25, "線軌潤滑不足，清潔並補油", "Linear guides dry, cleaned and lubricated", fix=0.85, dmin=30, dmax=60),
      act(0.20, "伺服馬達電纜破損，更換電纜", "Servo motor cable damaged, replaced", "伺服電纜 SC-5M", "servo cable SC-5M", 0.95, 90, 180)]),
    ("AL-1002", "VMC-640", 7,
     ["Z軸正向超程", "X軸碰到極限開關", "程式執行時Y軸超程"],
     ["Z+ overtravel after program start", "X axis hit limit switch"],
     [act(0.60, "工件座標設定錯誤，解除超程並修正座標", "Wrong work offset, released overtravel and corrected offset", fix=0.95, dmin=10, dmax=25),
      act(0.25, "程式座標錯誤，解除超程並請製程修改程式", "Program coordinate error, released and had process engineer fix program", fix=0.9, dmin=20, dmax=40),
      act(0.15, "極限擋塊鬆動，重新鎖固", "Limit dog loose, refastened", fix=0.9, dmin=30, dmax=60)]),
    ("AL-1003", "VMC-640", 4,
     ["開機後未做原點復歸", "原點復歸做到一半停住"],
     ["Reference return not done after power on"],
     [act(0.70, "依序執行原點復歸", "Performed reference return in order", fix=1.0, dmin=5, dmax=10),
      act(0.30, "編碼器電池電壓低，帶電更換電池", "Encoder battery low, replaced with power on", "電池 BAT-3.6V", "battery BAT-3.6V", 0.95, 20, 40)]),
    ("AL-1004", "VMC-640", 5,
     ["Y軸追隨誤差過大", "快速移動時X軸跳誤差", "撞機後Z軸誤差警報"],
     ["Following error on X at rapid", "Excess error Z after crash"],
     [act(0.50, "聯軸器螺絲鬆動，重新鎖緊", "Coupling screws loose, retightened", fix=0.9, dmin=60, dmax=120),
      act(0.30, "編碼器接頭鬆脫，重新插妥固定", "Encoder connector loose, reseated", fix=0.9, dmin=20, dmax=40),
      act(0.20, "撞機後滾珠螺桿受損，通知原廠", "Ball screw damaged after crash, vendor service requested", fix=0.1, dmin=60, dmax=120)]),
    ("AL-1005", "VMC-640", 14,
     ["潤滑油不足警報", "潤滑油箱見底", "滑軌油快沒了"],
     ["Lube low alarm", "Way oil tank empty"],
     [act(0.70, "補充滑軌油並手動打油", "Topped up way oil and ran manual lube", "滑軌油 VG68", "slideway oil VG68", 1.0, 5, 15),
      act(0.20, "潤滑管路接頭漏油，更換接頭", "Lube line fitting leaking, replaced", "油管接頭 4mm", "4 mm lube fitting", 0.9, 30, 60),
      act(0.10, "液位開關浮球卡住，清潔", "Level switch float stuck, cleaned", fix=0.9, dmin=10, dmax=20)]),
    ("AL-1006", "VMC-640", 10,
     ["切削液液位低警報", "切削液不出水", "切削液泵浦有吸空氣的聲音"],
     ["Coolant low alarm", "Coolant pump sucking air"],
     [act(0.60, "補充稀釋切削液至標準液位", "Topped up pre-mixed coolant", "切削液", "coolant", 1.0, 10, 20),
      act(0.25, "清除過濾網切屑", "Cleared chips from tank screen", fix=0.9, dmin=15, dmax=30),
      act(0.15, "液位開關浮球被切屑卡住，清潔", "Level float jammed with chips, cleaned", fix=0.9, dmin=10, dmax=20)]),
    ("AL-1007", "VMC-640", 9,
     ["氣壓不足，無法換刀", "氣壓錶只有0.4", "早上開機氣壓不足"],
     ["Air pressure low alarm at 0.4 MPa", "Low air, tool change stopped"],
     [act(0.50, "排放過濾器積水並調整調壓閥", "Drained filter bowl and reset regulator", fix=0.9, dmin=10, dmax=20),
      act(0.30, "氣管接頭漏氣，更換快速接頭", "Leaking air fitting, replaced push-in fitting", "快速接頭 PC8-02", "push-in fitting PC8-02", 0.9, 20, 40),
      act(0.20, "空壓機故障，通知廠務", "Plant compressor problem, reported to facilities", fix=0.4, dmin=30, dmax=60)]),
    ("AL-1008", "VMC-640", 6,
     ["門關上還是顯示門連鎖開啟", "門連鎖警報，主軸無法啟動", "門連鎖時好時壞"],
     ["Door interlock alarm with door closed"],
     [act(0.55, "清除門滑軌切屑並調整舌片", "Cleared chips from door rail, aligned tongue", fix=0.9, dmin=15, dmax=30),
      act(0.30, "門連鎖開關損壞，更換", "Interlock switch failed, replaced", "門連鎖開關 DI-10", "interlock switch DI-10", 0.95, 30, 60),
      act(0.15, "連鎖開關電纜被門夾斷，更換電纜", "Interlock cable pinched by door, replaced", fix=0.9, dmin=40, dmax=80)]),
    ("SP-101", "VMC-640", 7,
     ["主軸溫度過高停機", "主軸頭很燙", "高速加工一小時後主軸過熱"],
     ["Spindle overheat alarm after long high-speed run", "Spindle head hot"],
     [act(0.55, "油冷機散熱器積塵，清潔散熱器與濾網", "Chiller radiator clogged, cleaned radiator and filter", fix=0.9, dmin=30, dmax=60),
      act(0.25, "油冷機油位低，補充主軸冷卻油", "Chiller oil low, topped up", "主軸冷卻油", "spindle cooling oil", 0.9, 15, 30),
      act(0.20, "主軸軸承異音，通知原廠檢修主軸", "Spindle bearing noise, vendor called for spindle repair", fix=0.1, dmin=60, dmax=120)]),
    ("SP-102", "VMC-640", 4,
     ["主軸驅動器出現異常碼", "主軸啟動就跳驅動器異常"],
     ["Spindle drive alarm on start"],
     [act(0.50, "電氣箱冷氣濾網堵塞，清潔後重新開機", "Cabinet AC filter clogged, cleaned and restarted", fix=0.85, dmin=20, dmax=40),
      act(0.30, "驅動器風扇停轉，更換風扇", "Drive fan stopped, replaced fan", "散熱風扇 FAN-80", "cooling fan FAN-80", 0.9, 30, 60),
      act(0.20, "驅動器故障，通知原廠", "Drive failure, vendor called", fix=0.2, dmin=60, dmax=120)]),
    ("SP-105", "VMC-640", 12,
     ["換刀時刀具鬆不開", "鬆刀失敗，刀把卡在主軸", "打刀缸有漏氣聲", "按鬆刀鈕沒反應"],
     ["Tool won't release at tool change", "Drawbar cylinder leaking air"],
     [act(0.55, "清潔主軸錐孔與刀把後試鬆刀正常", "Cleaned spindle taper and holder, unclamp OK", fix=0.85, dmin=15, dmax=30),
      act(0.25, "打刀缸油封漏氣，更換打刀缸密封組", "Drawbar cylinder seals leaking, replaced seal kit", "打刀缸密封組 DS-40", "drawbar cylinder seal kit DS-40", 0.95, 90, 180),
      act(0.20, "鬆刀確認開關位置偏移，重新調整", "Unclamp switch moved, readjusted", fix=0.9, dmin=20, dmax=40)]),
    ("SP-106", "VMC-640", 5,
     ["主軸定位失敗無法換刀", "M19定位角度不對", "換刀時主軸定位跳警報"],
     ["Spindle orientation fail at ATC"],
     [act(0.60, "定位感測器接頭鬆動，重新插妥", "Orientation sensor connector loose, reseated", fix=0.9, dmin=15, dmax=30),
      act(0.25, "主軸皮帶鬆弛，調整皮帶張力", "Spindle belt slack, re-tensioned", fix=0.9, dmin=40, dmax=80),
      act(0.15, "定位參數被改，恢復備份參數", "Orientation parameter changed, restored from backup", fix=0.95, dmin=20, dmax=40)]),
    ("ATC-03", "VMC-640", 7,
     ["刀庫刀號亂掉", "刀庫停在兩個刀套中間", "換刀換錯刀"],
     ["Magazine stopped between pockets", "Wrong tool loaded, pocket count off"],
     [act(0.55, "刀庫計數近接開關積切屑，清潔並重新對刀號", "Chips on magazine counting sensor, cleaned and resynced pockets", fix=0.9, dmin=20, dmax=40),
      act(0.25, "手動轉回正確刀套並重設刀號表", "Turned magazine back manually and reset tool table", fix=0.85, dmin=10, dmax=25),
      act(0.20, "刀庫馬達煞車磨損，更換煞車", "Magazine motor brake worn, replaced", "煞車 BR-40", "brake BR-40", 0.9, 90, 150)]),
    # ------------------------------------------------------------ every model
    ("P-01", "", 6,
     ["全廠跳電後機台顯示欠相", "電源欠相警報，多台同時停機", "配電工程後馬達反轉"],
     ["Phase loss alarm after power dip", "Several machines stopped with P-01"],
     [act(0.60, "台電電壓驟降，電源恢復後依序開機", "Utility voltage dip, restarted in sequence after power returned", fix=0.95, dmin=15, dmax=40),
      act(0.25, "主斷路器一相接點燒蝕，通知電氣課更換", "Main breaker contact burnt on one phase, electrical section replaced it", "斷路器 NF-63", "breaker NF-63", 0.8, 60, 120),
      act(0.15, "配電工程後相序接錯，電氣人員對調兩相", "Phase sequence wrong after rewiring, electrician swapped two phases", fix=0.95, dmin=30, dmax=60)]),
]

# fmt: on

# Free-text symptoms as operators really write them; each is used once, on the first
# record of that code and language.
FREE_TEXT = [
    ("A02", "zh-TW", "夜班反映皮帶一直往操作側跑，邊緣已經磨出毛邊，面板最後跳A02"),
    ("A03", "zh-TW", "早上第一批料放上去皮帶就打滑，滾筒下方地板有油，懷疑是減速機漏的"),
    ("E-201", "zh-TW", "品保反映成品縮水，查溫度頁發現第二區比設定低40度，跳加熱圈斷線"),
    ("E-209", "zh-TW", "換料（PP改ABS）後計量越來越久，最後跳逾時，料斗裡的料摸起來潮潮的"),
    ("AL-1001", "zh-TW", "第二班做大面銑，X軸跳過載，程式是新寫的，切深3mm"),
    ("E-204", "zh-TW", "七月午後油溫一路爬到58度，冷卻水塔那邊說正在保養"),
    ("SP-105", "en", "Operator says tool stuck in spindle after M06, had to tap holder out with plastic hammer"),
    ("A11", "en", "During customer audit walk-through someone noticed grinding noise at tail end, pen read 6.8 mm/s"),
]


def weighted(rng: random.Random, items: list[T], key: Callable[[T], float]) -> T:
    return rng.choices(items, weights=[key(i) for i in items], k=1)[0]


class FixDeck:
    """Deals a code's fixes in their stated proportions, per code and language.

    Plain weighted sampling over ~10 records per code often lets a minor fix tie with
    the usual one. Smooth weighted round-robin keeps every prefix close to the stated
    proportions, so the usual fix stays on top, as it does in a real plant.
    """

    def __init__(self) -> None:
        self.current: dict[tuple[str, str, str], list[float]] = {}

    def draw(self, key: tuple[str, str, str], actions: list[Fix]) -> Fix:
        cw = self.current.setdefault(key, [0.0] * len(actions))
        for i, a in enumerate(actions):
            cw[i] += a["w"]
        pick = max(range(len(actions)), key=lambda i: cw[i])
        cw[pick] -= sum(a["w"] for a in actions)
        return actions[pick]


def make_record(rng: random.Random, deck: FixDeck, pool: Pool) -> dict[str, str]:
    code, model, _freq, sym_zh, sym_en, actions = pool
    day = START + dt.timedelta(days=rng.randrange((END - START).days + 1))
    if not model:  # a code shared by every model: any machine can raise it
        model = rng.choice(sorted(MACHINES))
    machine = weighted(rng, MACHINES[model], key=lambda m: m[1])[0]
    techs = [t for t in TECHNICIANS if t[3] <= day <= t[4]]
    tech = weighted(rng, techs, key=lambda t: t[2])
    lang = tech[1]
    fix = deck.draw((code, pool[1], lang), actions)
    if rng.random() < fix["fix"]:
        result = "fixed"
    elif fix["fix"] < 0.5 or rng.random() < 0.35:
        result = "escalated"
    else:
        result = "not_fixed"
    minutes = rng.randint(*fix["d"])
    minutes = max(5, 5 * round(minutes / 5))
    zh = lang == "zh-TW"
    return {
        "date": day.isoformat(),
        "machine_id": machine,
        "machine_model": model,
        "code": code,
        "symptom": rng.choice(sym_zh if zh else sym_en),
        "action": fix["zh"] if zh else fix["en"],
        "parts": fix["pzh"] if zh else fix["pen"],
        "result": result,
        "technician": tech[0],
        "duration_min": str(minutes),
        "_lang": lang,
    }


def generate(count: int, seed: int = 42) -> list[dict[str, str]]:
    rng = random.Random(seed)
    deck = FixDeck()
    rows = [make_record(rng, deck, pool) for pool in POOLS]  # every code at least once
    while len(rows) < count:
        rows.append(make_record(rng, deck, weighted(rng, POOLS, key=lambda p: p[2])))
    rows.sort(key=lambda r: (r["date"], r["machine_id"], r["code"]))
    for code, lang, text in FREE_TEXT:
        for row in rows:
            if row["code"] == code and row["_lang"] == lang:
                row["symptom"] = text
                break
    for row in rows:
        del row["_lang"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--count", type=int, default=360)
    args = parser.parse_args()
    rows = generate(args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} records to {args.out}")


if __name__ == "__main__":
    main()
