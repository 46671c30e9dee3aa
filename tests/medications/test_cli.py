"""`tandem med`: JSON and human output, and exit status 2 naming the option for bad input."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tandem.medications.cli import med_app

# The group alone, mounted as the real app mounts it, so these tests don't depend on other
# domains' commands importing cleanly; the subprocess test covers the real entry point.
app = typer.Typer()
app.callback()(lambda: None)
app.add_typer(med_app, name="med")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["med", *args])
    return result.exit_code, result.stdout, result.stderr


def test_check_json() -> None:
    code, out, err = run(
        "check",
        "baclofen",
        "--age",
        "70",
        "--sex",
        "male",
        "--weight-kg",
        "60",
        "--creatinine-mg-dl",
        "3.0",
        "--on",
        "opioids,benzodiazepines",
        "--seizure-history",
        "--json",
    )
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert (body["crcl_ml_min"], body["egfr"]) == (19.4, 21.7)
    ids = [f["rule_id"] for f in body["findings"]]
    for rule_id in (
        "baclofen.renal_severe",
        "baclofen.opioids",
        "baclofen.cns_depressants",
        "baclofen.seizure_history",
        "baclofen.never_stop_abruptly",
    ):
        assert rule_id in ids
    first = body["findings"][0]
    assert {"rule_id", "severity", "reason", "source"} <= set(first)
    assert first["severity"] == "major_caution"
    assert first["source"][0]["citation"]


def test_check_umol_creatinine_and_pregnancy() -> None:
    code, out, _ = run(
        "check",
        "baclofen",
        "--age",
        "70",
        "--sex",
        "male",
        "--weight-kg",
        "60",
        "--creatinine-umol-l",
        "265.2",
        "--json",
    )
    assert code == 0 and json.loads(out)["crcl_ml_min"] == 19.4
    code, out, _ = run("check", "baclofen", "--sex", "female", "--pregnant", "--json")
    ids = [f["rule_id"] for f in json.loads(out)["findings"]]
    assert "baclofen.pregnancy" in ids and "missing.creatinine_mg_dl" in ids


def test_check_naltrexone_with_methadone() -> None:
    code, out, _ = run("check", "naltrexone", "--on", "methadone", "--json")
    findings = json.loads(out)["findings"]
    assert findings[0]["rule_id"] == "naltrexone.opioids"
    assert findings[0]["severity"] == "contraindicated"


def test_check_human_output() -> None:
    code, out, _ = run(
        "check",
        "acamprosate",
        "--age",
        "70",
        "--sex",
        "male",
        "--weight-kg",
        "60",
        "--creatinine-mg-dl",
        "3.0",
        "--on",
        "none",
    )
    assert code == 0
    assert "19.4 mL/min" in out
    assert "CONTRAINDICATED" in out and "acamprosate.renal_contraindicated" in out


def test_plan_json_label_titration() -> None:
    code, out, err = run(
        "plan",
        "baclofen",
        "--start",
        "5mg-tid",
        "--step",
        "5mg",
        "--every",
        "3d",
        "--target",
        "20mg-tid",
        "--start-date",
        "2025-03-01",
        "--json",
    )
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert [d["total_mg"] for d in body["days"]] == [15] * 3 + [30] * 3 + [45] * 3 + [60] * 3
    assert body["days"][0]["date"] == "2025-03-01"
    assert body["days"][3]["doses"] == [
        {"time_slot": "morning", "mg": 10.0},
        {"time_slot": "midday", "mg": 10.0},
        {"time_slot": "evening", "mg": 10.0},
    ]
    assert body["continues"] and body["ceiling_mg_day"] == 80


def test_plan_defaults_to_the_label_titration_and_prints_a_table() -> None:
    code, out, _ = run("plan", "baclofen", "--target", "15mg-tid", "--start-date", "2025-03-01")
    assert code == 0
    assert "2025-03-09" in out and "15 mg" in out


def test_plan_with_kidney_function() -> None:
    code, out, _ = run(
        "plan",
        "baclofen",
        "--target",
        "15mg-tid",
        "--start-date",
        "2025-03-01",
        "--age",
        "65",
        "--sex",
        "male",
        "--weight-kg",
        "70",
        "--creatinine-mg-dl",
        "1.4",
        "--json",
    )
    assert code == 0
    body = json.loads(out)
    assert body["ceiling_mg_day"] == pytest.approx(53.3333)
    assert any(lim["rule_id"] == "baclofen.renal_mild" for lim in body["limits"])


def test_taper_json() -> None:
    code, out, err = run(
        "taper",
        "baclofen",
        "--from",
        "20mg-tid",
        "--over",
        "2w",
        "--start-date",
        "2025-03-01",
        "--json",
    )
    assert (code, err) == (0, "")
    body = json.loads(out)
    days = body["days"]
    assert len(days) == 14
    assert all(set(d) == {"date", "doses", "total_mg"} for d in days)
    assert days[0]["total_mg"] == 55 and days[-1]["total_mg"] == 5
    assert days[-1]["date"] == "2025-03-14" and body["stop_date"] == "2025-03-15"


def test_list_and_show() -> None:
    code, out, _ = run("list", "--json")
    assert code == 0
    ids = {m["id"] for m in json.loads(out)}
    assert {"baclofen", "naltrexone", "lofexidine", "oxazepam"} <= ids
    code, out, _ = run("list")
    assert code == 0 and "baclofen" in out
    code, out, _ = run("show", "baclofen")
    assert code == 0
    for text in (
        "Ozobax",
        "Gablofen",
        "UNVERIFIED",
        "baclofen.renal_severe",
        "jcp_2014",
        "Akhondzadeh",
        "Never stop oral baclofen abruptly",
    ):
        assert text in out, text
    code, out, _ = run("show", "baclofen", "--json")
    assert json.loads(out)["dosing"]["max_mg_day"]["value"] == 80


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["check", "baclofen", "--age", "-1"], "--age"),
        (["check", "baclofen", "--weight-kg", "0"], "--weight-kg"),
        (["check", "baclofen", "--creatinine-mg-dl", "0"], "--creatinine-mg-dl"),
        (["check", "baclofen", "--creatinine-mg-dl", "-1.5"], "--creatinine-mg-dl"),
        (["check", "baclofen", "--creatinine-umol-l", "-1"], "--creatinine-umol-l"),
        (["check", "baclofen", "--sex", "x"], "--sex"),
        (["check", "baclofen", "--on", "heroin"], "--on"),
        (["check", "baclofen", "--qtc-ms", "0"], "--qtc-ms"),
        (["check", "baclofen", "--weight-basis", "lean"], "--weight-basis"),
        (["check", "aspirin"], "MEDICATION"),
        (["plan", "baclofen", "--target", "30mg-qid"], "--target"),
        (["plan", "baclofen", "--target", "twenty"], "--target"),
        (["plan", "baclofen", "--target", "20mg-tid", "--start", "5mg-xyz"], "--start"),
        (["plan", "baclofen", "--target", "20mg-tid", "--step", "0mg"], "--step"),
        (["plan", "baclofen", "--target", "20mg-tid", "--step", "-5mg"], "--step"),
        (["plan", "baclofen", "--target", "20mg-tid", "--every", "0d"], "--every"),
        (
            ["plan", "baclofen", "--target", "20mg-tid", "--start-date", "2025-13-01"],
            "--start-date",
        ),
        (
            ["plan", "baclofen", "--target", "20mg-tid", "--creatinine-mg-dl", "0"],
            "--creatinine-mg-dl",
        ),
        (
            [
                "plan",
                "naltrexone",
                "--target",
                "50mg-daily",
                "--start",
                "25mg-daily",
                "--step",
                "25mg",
                "--every",
                "3d",
            ],
            "--protocol-max-mg-day",
        ),
        (["taper", "baclofen", "--from", "20mg-tid", "--over", "0d"], "--over"),
        (["taper", "baclofen", "--from", "20mg-tid", "--over", "-3d"], "--over"),
        (["taper", "baclofen", "--from", "abc", "--over", "2w"], "--from"),
        (["show", "nothing"], "MEDICATION"),
    ],
)
def test_bad_input_exits_2_naming_the_option(args, option) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.startswith(f"Error: {option}:")


def test_abrupt_stop_message_gives_the_reason_and_source() -> None:
    code, _, err = run("taper", "baclofen", "--from", "20mg-tid", "--over", "0d")
    assert code == 2
    assert "abrupt" in err and "seizures" in err and "Ozobax" in err


def test_plan_reduces_the_labelled_start_and_step_for_kidney_function() -> None:
    # Issue 9 item 3: CrCl 19.4 (fact sheet F1 worked value): start and step 5 mg × 1/3.
    kidney = ["--age", "70", "--sex", "male", "--weight-kg", "60", "--creatinine-mg-dl", "3.0"]
    code, out, err = run("plan", "baclofen", "--target", "5mg-tid", *kidney, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["days"][0]["doses"][0]["mg"] == 1.67
    assert any("start, step and target reduced by 2/3" in n["text"] for n in body["notes"])
    code, out, err = run("plan", "baclofen", "--target", "5mg-qid", "--start", "5mg-tid", *kidney)
    assert code == 2 and "--start: with creatinine clearance 19 mL/min" in err
