"""Hand-copied from the clinical fact sheet (sections A, B and G).

The tests compare the shipped YAML and the engine against these tables, so a change to either
side that the facts sheet does not support fails a test.
"""

from __future__ import annotations

ZERO_TO_7 = (0, 1, 2, 3, 4, 5, 6, 7)
ZERO_TO_3 = (0, 1, 2, 3)
ZERO_TO_4 = (0, 1, 2, 3, 4)
ZERO_TO_6 = (0, 1, 2, 3, 4, 5, 6)

# Items in scale order with their legal values.
ITEMS: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "ciwa_ar": [  # A1: nine items 0-7, orientation 0-4
        ("nausea_vomiting", ZERO_TO_7),
        ("tremor", ZERO_TO_7),
        ("paroxysmal_sweats", ZERO_TO_7),
        ("anxiety", ZERO_TO_7),
        ("agitation", ZERO_TO_7),
        ("tactile_disturbances", ZERO_TO_7),
        ("auditory_disturbances", ZERO_TO_7),
        ("visual_disturbances", ZERO_TO_7),
        ("headache", ZERO_TO_7),
        ("orientation", (0, 1, 2, 3, 4)),
    ],
    "cows": [  # A3: sparse values (SAMHSA TIP 45 / VA VistA)
        ("resting_pulse", (0, 1, 2, 4)),
        ("sweating", (0, 1, 2, 3, 4)),
        ("restlessness", (0, 1, 3, 5)),
        ("pupil_size", (0, 1, 2, 5)),
        ("bone_joint_aches", (0, 1, 2, 4)),
        ("runny_nose_tearing", (0, 1, 2, 4)),
        ("gi_upset", (0, 1, 2, 3, 5)),
        ("tremor", (0, 1, 2, 4)),
        ("yawning", (0, 1, 2, 4)),
        ("anxiety_irritability", (0, 1, 2, 4)),
        ("gooseflesh", (0, 3, 5)),
    ],
    "sows_gossop": [  # A4: ten items 0-3 (not the 0-4 Subjective OWS)
        ("feeling_sick", ZERO_TO_3),
        ("stomach_cramps", ZERO_TO_3),
        ("muscle_spasms", ZERO_TO_3),
        ("feeling_cold", ZERO_TO_3),
        ("heart_pounding", ZERO_TO_3),
        ("muscular_tension", ZERO_TO_3),
        ("aches_pains", ZERO_TO_3),
        ("yawning", ZERO_TO_3),
        ("runny_eyes", ZERO_TO_3),
        ("insomnia", ZERO_TO_3),
    ],
    "phq9": [  # B4
        ("interest_pleasure", ZERO_TO_3),
        ("down_depressed", ZERO_TO_3),
        ("sleep", ZERO_TO_3),
        ("tired_energy", ZERO_TO_3),
        ("appetite", ZERO_TO_3),
        ("feeling_bad_about_self", ZERO_TO_3),
        ("concentration", ZERO_TO_3),
        ("psychomotor", ZERO_TO_3),
        ("self_harm_thoughts", ZERO_TO_3),
    ],
    "gad7": [  # B5
        ("nervous", ZERO_TO_3),
        ("uncontrolled_worry", ZERO_TO_3),
        ("excessive_worry", ZERO_TO_3),
        ("trouble_relaxing", ZERO_TO_3),
        ("restless", ZERO_TO_3),
        ("irritable", ZERO_TO_3),
        ("afraid", ZERO_TO_3),
    ],
    "pacs": [  # B1: five items about the past week, each 0-6
        ("frequency", ZERO_TO_6),
        ("intensity", ZERO_TO_6),
        ("duration", ZERO_TO_6),
        ("ability_to_resist", ZERO_TO_6),
        ("overall", ZERO_TO_6),
    ],
    "audit": [  # G1: items 1-8 score 0-4; items 9 and 10 score 0, 2 or 4
        ("frequency", ZERO_TO_4),
        ("typical_quantity", ZERO_TO_4),
        ("six_or_more", ZERO_TO_4),
        ("unable_to_stop", ZERO_TO_4),
        ("failed_expectations", ZERO_TO_4),
        ("morning_drink", ZERO_TO_4),
        ("guilt", ZERO_TO_4),
        ("blackout", ZERO_TO_4),
        ("injury", (0, 2, 4)),
        ("others_concerned", (0, 2, 4)),
    ],
    "audit_c": [  # G1: AUDIT items 1-3
        ("frequency", ZERO_TO_4),
        ("typical_quantity", ZERO_TO_4),
        ("six_or_more", ZERO_TO_4),
    ],
    "dast10": [  # G2: ten yes/no items, one point each
        ("used_drugs", (0, 1)),
        ("more_than_one", (0, 1)),
        ("able_to_stop", (0, 1)),
        ("blackouts_flashbacks", (0, 1)),
        ("bad_guilty", (0, 1)),
        ("others_complain", (0, 1)),
        ("neglected_family", (0, 1)),
        ("illegal_activities", (0, 1)),
        ("withdrawal", (0, 1)),
        ("medical_problems", (0, 1)),
    ],
}

TOTALS = {
    "ciwa_ar": (0, 67),
    "cows": (0, 48),
    "sows_gossop": (0, 30),
    "phq9": (0, 27),
    "gad7": (0, 21),
    "pacs": (0, 30),  # B1
    "audit": (0, 40),
    "audit_c": (0, 12),
    "dast10": (0, 10),
}

# (instrument, scheme) -> [(band id, min, max)], lowest severity first.
BANDS: dict[tuple[str, str], list[tuple[str, int, int]]] = {
    ("ciwa_ar", "asam_2020"): [("minimal", 0, 9), ("moderate", 10, 18), ("severe", 19, 67)],
    ("ciwa_ar", "va_paws"): [("minimal", 0, 7), ("moderate", 8, 14), ("severe", 15, 67)],
    ("ciwa_ar", "pmc6286444"): [
        ("minimal", 0, 7),
        ("moderate", 8, 15),
        ("severe", 16, 67),
    ],
    ("cows", "wesson_ling_2003"): [
        ("none", 0, 4),
        ("mild", 5, 12),
        ("moderate", 13, 24),
        ("moderately_severe", 25, 36),
        ("severe", 37, 48),
    ],
    ("phq9", "kroenke_2001"): [
        ("minimal", 0, 4),
        ("mild", 5, 9),
        ("moderate", 10, 14),
        ("moderately_severe", 15, 19),
        ("severe", 20, 27),
    ],
    ("gad7", "spitzer_2006"): [
        ("minimal", 0, 4),
        ("mild", 5, 9),
        ("moderate", 10, 14),
        ("severe", 15, 21),
    ],
    ("audit", "who_risk_zones"): [  # G1
        ("zone_1", 0, 7),
        ("zone_2", 8, 15),
        ("zone_3", 16, 19),
        ("zone_4", 20, 40),
    ],
    ("dast10", "skinner_levels"): [  # G2
        ("none", 0, 0),
        ("low", 1, 2),
        ("moderate", 3, 5),
        ("substantial", 6, 8),
        ("severe", 9, 10),
    ],
}

DEFAULT_SCHEMES = {
    "ciwa_ar": "asam_2020",
    "cows": "wesson_ling_2003",
    "sows_gossop": None,
    "phq9": "kroenke_2001",
    "gad7": "spitzer_2006",
    "pacs": None,  # B1: cut-offs (>20, >=15) but no published bands
    "audit": "who_risk_zones",
    "audit_c": None,
    "dast10": "skinner_levels",
}

# B4: PHQ-9 item LOINC codes (US Core example), in item order; totals per B4/B5.
PHQ9_ITEM_LOINC = [
    "44250-9",
    "44255-8",
    "44259-0",
    "44254-1",
    "44251-7",
    "44258-2",
    "44252-5",
    "44253-3",
    "44260-8",
]
TOTAL_LOINC = {
    "phq9": "44261-6",
    "gad7": "70274-6",
    "pacs": None,
    "ciwa_ar": None,
    "cows": None,
    "sows_gossop": None,
    "audit": None,
    "audit_c": "75626-2",  # B6: US Core
    "dast10": None,
}


def answers(instrument_id: str, values: list[int]) -> dict[str, int]:
    """Values given in scale order, keyed by this table's item ids."""
    ids = [item_id for item_id, _ in ITEMS[instrument_id]]
    assert len(values) == len(ids), f"{instrument_id} has {len(ids)} items"
    return dict(zip(ids, values, strict=True))


# --------------------------------------------------------------------------- anchor wording
# Copied by hand from the reproductions named below (not from the YAML). None: the published
# form prints the number alone, with no words for that grade.
BLANK = None
_HALLUCINATIONS = {
    4: "moderately severe hallucinations",
    5: "severe hallucinations",
    6: "extremely severe hallucinations",
    7: "continuous hallucinations",
}

# CIWA-Ar, Sullivan et al. 1989 (Addiction Research Foundation form), as transcribed by CamCOPS
# (camcops.readthedocs.io, extra_strings/ciwa.xml) and checked against MDCalc calc 1736 (all
# items), the UpToDate calculator (items 1-5, grades 2, 3, 5 and 6 shown as points only) and
# CCJM Table 2 (items 1-7, abridged). Orientation 4 as in the clinical fact sheet A1.
CIWA_AR_ANCHORS: dict[str, dict[int, str | None]] = {
    "nausea_vomiting": {
        0: "no nausea and no vomiting",
        1: "mild nausea with no vomiting",
        2: BLANK,
        3: BLANK,
        4: "intermittent nausea with dry heaves",
        5: BLANK,
        6: BLANK,
        7: "constant nausea, frequent dry heaves and vomiting",
    },
    "tremor": {
        0: "no tremor",
        1: "not visible, but can be felt fingertip to fingertip",
        2: BLANK,
        3: BLANK,
        4: "moderate, with patient's arms extended",
        5: BLANK,
        6: BLANK,
        7: "severe, even with arms not extended",
    },
    "paroxysmal_sweats": {
        0: "no sweat visible",
        1: "barely perceptible sweating, palms moist",
        2: BLANK,
        3: BLANK,
        4: "beads of sweat obvious on forehead",
        5: BLANK,
        6: BLANK,
        7: "drenching sweats",
    },
    "anxiety": {
        0: "no anxiety, at ease",
        1: "mild anxious",  # sic, as printed; UpToDate, MDCalc and CCJM: "mildly anxious"
        2: BLANK,
        3: BLANK,
        4: "moderately anxious, or guarded, so anxiety is inferred",
        5: BLANK,
        6: BLANK,
        7: "equivalent to acute panic states as seen in severe delirium or acute schizophrenic"
        " reactions",
    },
    "agitation": {
        0: "normal activity",
        1: "somewhat more than normal activity",
        2: BLANK,
        3: BLANK,
        4: "moderately fidgety and restless",
        5: BLANK,
        6: BLANK,
        7: "paces back and forth during most of the interview, or constantly thrashes about",
    },
    "tactile_disturbances": {
        0: "none",
        1: "very mild itching, pins and needles, burning or numbness",
        2: "mild itching, pins and needles, burning or numbness",
        3: "moderate itching, pins and needles, burning or numbness",
        **_HALLUCINATIONS,
    },
    "auditory_disturbances": {
        0: "not present",
        1: "very mild harshness or ability to frighten",
        2: "mild harshness or ability to frighten",
        3: "moderate harshness or ability to frighten",
        **_HALLUCINATIONS,
    },
    "visual_disturbances": {
        0: "not present",
        1: "very mild sensitivity",
        2: "mild sensitivity",
        3: "moderate sensitivity",
        **_HALLUCINATIONS,
    },
    "headache": {
        0: "not present",
        1: "very mild",
        2: "mild",
        3: "moderate",
        4: "moderately severe",
        5: "severe",
        6: "very severe",
        7: "extremely severe",
    },
    "orientation": {
        0: "oriented and can do serial additions",
        1: "cannot do serial additions or is uncertain about date",
        2: "disoriented for date by no more than 2 calendar days",
        3: "disoriented for date by more than 2 calendar days",
        4: "disoriented for place and/or person",
    },
}

# COWS, Wesson & Ling 2003 form, as reproduced in SAMHSA TIP 45 (NBK64244, table A72915), the
# VA VistA instrument specification and copies of the form (PCSS-MAT; scribd 259468517 and
# 640986517; wholesaledrugtests.blogspot.com). Where TIP 45 words a grade differently, the
# form copies' words are used (TIP 45: "no reports", "subjective reports", "moisture",
# "obviously irritable, anxious").
COWS_ANCHORS: dict[str, dict[int, str | None]] = {
    "resting_pulse": {
        0: "pulse rate 80 or below",
        1: "pulse rate 81-100",
        2: "pulse rate 101-120",
        4: "pulse rate greater than 120",
    },
    "sweating": {
        0: "no report of chills or flushing",
        1: "subjective report of chills or flushing",
        2: "flushed or observable moistness on face",
        3: "beads of sweat on brow or face",
        4: "sweat streaming off face",
    },
    "restlessness": {
        0: "able to sit still",
        1: "reports difficulty sitting still, but is able to do so",
        3: "frequent shifting or extraneous movements of legs/arms",
        5: "unable to sit still for more than a few seconds",
    },
    "pupil_size": {
        0: "pupils pinned or normal size for room light",
        1: "pupils possibly larger than normal for room light",
        2: "pupils moderately dilated",
        5: "pupils so dilated that only the rim of the iris is visible",
    },
    "bone_joint_aches": {
        0: "not present",
        1: "mild diffuse discomfort",
        2: "patient reports severe diffuse aching of joints/muscles",
        4: "patient is rubbing joints or muscles and is unable to sit still because of discomfort",
    },
    "runny_nose_tearing": {
        0: "not present",
        1: "nasal stuffiness or unusually moist eyes",
        2: "nose running or tearing",
        4: "nose constantly running or tears streaming down cheeks",
    },
    "gi_upset": {
        0: "no GI symptoms",
        1: "stomach cramps",
        2: "nausea or loose stool",
        3: "vomiting or diarrhea",
        5: "multiple episodes of diarrhea or vomiting",
    },
    "tremor": {
        0: "no tremor",
        1: "tremor can be felt, but not observed",
        2: "slight tremor observable",
        4: "gross tremor or muscle twitching",
    },
    "yawning": {
        0: "no yawning",
        1: "yawning once or twice during assessment",
        2: "yawning three or more times during assessment",
        4: "yawning several times/minute",
    },
    "anxiety_irritability": {
        0: "none",
        1: "patient reports increasing irritability or anxiousness",
        2: "patient obviously irritable or anxious",
        4: "patient so irritable or anxious that participation in the assessment is difficult",
    },
    "gooseflesh": {
        0: "skin is smooth",
        3: "piloerection of skin can be felt or hairs standing up on arms",
        5: "prominent piloerection",
    },
}

ANCHORS = {"ciwa_ar": CIWA_AR_ANCHORS, "cows": COWS_ANCHORS}
