"""The SQL of the MIMIC-IV extraction (:mod:`vanco_offline.data.mimic`) and the itemids it uses.

The extraction runs in two parts. DuckDB reads the PhysioNet files (views named after the
MIMIC-IV tables, only the columns used) and does everything that touches a large table:
the vancomycin records of ``inputevents``, ``emar`` / ``emar_detail`` and
``prescriptions``; the per-stay ICU weight; the lab and chart values of the cohort's
subjects; and, for each decision time, the last value of each feature at or before it
(``ASOF JOIN``). pandas does the per-dose logic in between (IV or not, reconciliation,
order matching, courses, the decision grid), on the few thousand vancomycin records.
:func:`extraction_sql` returns all of it as one script (``vanco-offline extract mimic
--print-sql``); data/README.md shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MIMIC_ITEMS", "extraction_sql", "source_sql"]

#: itemids used, by column (documented in data/README.md).
MIMIC_ITEMS: dict[str, tuple[int, ...]] = {
    "vancomycin": (225798,),
    "vanco_level": (51009,),
    "creatinine": (50912,),
    "bun": (51006,),
    "wbc": (51301,),
    "heart_rate": (220045,),
    "sbp": (220050, 220179),
    "temperature_c": (223762,),
    "temperature_f": (223761,),
    "weight_kg": (226512,),
    "height_cm": (226730,),
    "dialysis_procedure": (225441, 225802, 225803, 225805, 225809, 225955),
    "dialysis_chart": (226499, 224154, 224144, 224191, 225183),
}

_LBS_TO_KG = 0.45359237
_INCH_TO_CM = 2.54
_LABS = ("vanco_level", "creatinine", "bun", "wbc")


def _in(items: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in items)


def _mg(value: str, unit: str) -> str:
    return (
        f"CASE lower(trim({unit})) WHEN 'mg' THEN TRY_CAST({value} AS DOUBLE) "
        f"WHEN 'g' THEN TRY_CAST({value} AS DOUBLE) * 1000 "
        f"WHEN 'grams' THEN TRY_CAST({value} AS DOUBLE) * 1000 END"
    )


def source_sql(have: Mapping[str, bool]) -> dict[str, str]:
    """The queries that collect the vancomycin records (part 1), by name.

    ``have`` says which optional tables exist; an absent one gives an empty result.
    """
    empty_emar = (
        "SELECT NULL::BIGINT AS subject_id, NULL::BIGINT AS hadm_id, NULL::VARCHAR AS emar_id, "
        "NULL::TIMESTAMP AS t, NULL::VARCHAR AS medication, NULL::VARCHAR AS event_txt, "
        "NULL::BIGINT AS pharmacy_id, NULL::DOUBLE AS mg_given, NULL::DOUBLE AS mg_due, "
        "NULL::VARCHAR AS detail_route WHERE false"
    )
    emar = (
        f"""
SELECT e.subject_id, e.hadm_id, e.emar_id, e.charttime AS t, e.medication, e.event_txt, e.pharmacy_id,
       d.mg_given, d.mg_due, d.detail_route
FROM emar e
LEFT JOIN (SELECT emar_id,
                  sum(CASE WHEN parent_field_ordinal IS NOT NULL
                           THEN {_mg("dose_given", "dose_given_unit")} END)
                    AS mg_given,
                  max(CASE WHEN parent_field_ordinal IS NULL
                           THEN {_mg("dose_due", "dose_due_unit")} END) AS mg_due,
                  min(route) AS detail_route
           FROM emar_detail
           WHERE emar_id IN (SELECT emar_id FROM emar WHERE lower(medication) LIKE '%vancomycin%')
           GROUP BY emar_id) d USING (emar_id)
WHERE lower(e.medication) LIKE '%vancomycin%'"""
        if have.get("emar") and have.get("emar_detail")
        else empty_emar
    )
    prescriptions = (
        f"""
SELECT p.subject_id, p.hadm_id, p.pharmacy_id, p.starttime, p.stoptime, p.drug, p.route,
       {_mg("p.dose_val_rx", "p.dose_unit_rx")} AS mg
FROM prescriptions p WHERE lower(p.drug) LIKE '%vancomycin%'"""
        if have.get("prescriptions")
        else "SELECT NULL::BIGINT AS subject_id, NULL::BIGINT AS hadm_id, NULL::BIGINT AS pharmacy_id, "
        "NULL::TIMESTAMP AS starttime, NULL::TIMESTAMP AS stoptime, NULL::VARCHAR AS drug, "
        "NULL::VARCHAR AS route, NULL::DOUBLE AS mg WHERE false"
    )
    return {
        "stays": "-- ICU stays\nSELECT subject_id, hadm_id, stay_id, intime, outtime FROM icustays",
        "vanco_inputevents": f"""-- inputevents: every vancomycin row (itemid 225798), IV or not
SELECT i.stay_id, i.starttime AS t, i.amount, lower(trim(i.amountuom)) AS uom,
       coalesce(i.statusdescription, '') AS status, coalesce(i.ordercategoryname, '') AS category, i.orderid
FROM inputevents i WHERE i.itemid IN ({_in(MIMIC_ITEMS["vancomycin"])})""",
        "vanco_emar": "-- eMAR: every vancomycin event, with the mg given (emar_detail product rows) or due\n"
        + emar.strip(),
        "vanco_orders": "-- prescriptions: every vancomycin order, with its mg (dose_val_rx in mg or g)\n"
        + prescriptions.strip(),
    }


def extraction_sql(
    interval_h: float = 12.0,
    max_days: float = 7.0,
    optional: Mapping[str, bool] | None = None,
) -> str:
    """The whole extraction as one SQL script (for reading; :func:`extract_mimic` runs its parts).

    The pandas steps between the parts are described in comments; ``cohort``, ``grid`` and
    ``episodes`` are the tables pandas hands back to DuckDB.
    """
    have = {
        name: True
        for name in ("chartevents", "procedureevents", "omr", "prescriptions", "emar", "emar_detail")
    }
    have.update(optional or {})
    parts = [f"CREATE TEMP TABLE {name} AS\n{sql.strip()};" for name, sql in source_sql(have).items()]
    parts.append(
        "-- pandas: IV only, inputevents and eMAR reconciled, mg from orders, courses, episodes, "
        "a decision\n"
        f"-- every {float(interval_h):g} h from the course's first dose for at most {float(max_days):g} days "
        "(vanco_offline.data.mimic)"
    )
    parts += [f"CREATE TEMP TABLE {name} AS\n{sql.strip()};" for name, sql in cohort_sql(have).items()]
    parts.append(f"-- the last value of each feature at or before each decision\n{asof_sql('creatinine')};")
    return "\n\n".join(parts)


def cohort_sql(have: Mapping[str, bool]) -> dict[str, str]:
    """The queries over the large tables, restricted to the cohort (part 2), by name."""
    items = MIMIC_ITEMS
    chart_items = (
        items["heart_rate"]
        + items["sbp"]
        + items["temperature_c"]
        + items["temperature_f"]
        + items["weight_kg"]
        + items["height_cm"]
    )
    lab_case = " ".join(f"WHEN {items[name][0]} THEN '{name}'" for name in _LABS)
    obs = f"""
SELECT subject_id, name, t, max(value) AS value FROM (
  SELECT l.subject_id, CASE l.itemid {lab_case} END AS name, l.charttime AS t, l.valuenum AS value
  FROM labevents l
  WHERE l.itemid IN ({_in(tuple(items[name][0] for name in _LABS))}) AND l.valuenum IS NOT NULL
    AND l.subject_id IN (SELECT subject_id FROM cohort)"""
    if have.get("chartevents"):
        obs += f"""
  UNION ALL
  SELECT c.subject_id,
         CASE WHEN c.itemid = {items["heart_rate"][0]} THEN 'heart_rate'
              WHEN c.itemid IN ({_in(items["sbp"])}) THEN 'sbp'
              WHEN c.itemid IN ({_in(items["temperature_c"] + items["temperature_f"])}) THEN 'temperature'
              WHEN c.itemid = {items["weight_kg"][0]} THEN 'weight_kg'
              WHEN c.itemid = {items["height_cm"][0]} THEN 'height_cm' END AS name,
         c.charttime AS t,
         CASE WHEN c.itemid IN ({_in(items["temperature_f"])}) THEN (c.valuenum - 32) * 5 / 9
              ELSE c.valuenum END AS value
  FROM chartevents c
  WHERE c.itemid IN ({_in(chart_items)}) AND c.valuenum IS NOT NULL
    AND c.subject_id IN (SELECT subject_id FROM cohort)"""
    obs += "\n) GROUP BY ALL"
    dialysis_parts = []
    if have.get("procedureevents"):
        dialysis_parts.append(f"""
SELECT p.subject_id, p.starttime AS t, coalesce(p.endtime, p.starttime) AS t_end FROM procedureevents p
WHERE p.itemid IN ({_in(items["dialysis_procedure"])}) AND p.subject_id IN (SELECT subject_id FROM cohort)""")
    if have.get("chartevents"):
        dialysis_parts.append(f"""
SELECT c.subject_id, c.charttime AS t, c.charttime AS t_end FROM chartevents c
WHERE c.itemid IN ({_in(items["dialysis_chart"])}) AND c.subject_id IN (SELECT subject_id FROM cohort)""")
    dialysis = (
        "\nUNION ALL".join(dialysis_parts)
        or "\nSELECT NULL::BIGINT AS subject_id, NULL::TIMESTAMP AS t, NULL::TIMESTAMP AS t_end WHERE false"
    )
    omr = (
        f"""
SELECT o.subject_id, o.chartdate::TIMESTAMP AS t,
       CASE WHEN o.result_name = 'Weight (Lbs)' THEN 'weight_kg' ELSE 'height_cm' END AS name,
       max(TRY_CAST(o.result_value AS DOUBLE)
           * CASE WHEN o.result_name = 'Weight (Lbs)' THEN {_LBS_TO_KG} ELSE {_INCH_TO_CM} END) AS value
FROM omr o WHERE o.result_name IN ('Weight (Lbs)', 'Height (Inches)')
  AND o.subject_id IN (SELECT subject_id FROM cohort)
GROUP BY ALL"""
        if have.get("omr")
        else "SELECT NULL::BIGINT AS subject_id, NULL::TIMESTAMP AS t, NULL::VARCHAR AS name, "
        "NULL::DOUBLE AS value WHERE false"
    )
    return {
        "obs": "-- lab values (by subject and time, whatever the admission) and chart values of the cohort\n"
        + obs.strip(),
        "dialysis_events": "-- dialysis: procedure runs and charted active-dialysis items\n"
        + dialysis.strip(),
        "icu_weight": """-- the ICU's own weight of each stay (inputevents.patientweight, first charted)
SELECT i.stay_id, (list(i.patientweight ORDER BY i.starttime, i.patientweight))[1] AS weight_kg
FROM inputevents i
WHERE i.patientweight > 0 AND i.stay_id IN (SELECT stay_id FROM cohort) GROUP BY i.stay_id""",
        "omr_values": "-- omr weights and heights of the cohort (pounds and inches converted)\n"
        + omr.strip(),
    }


def asof_sql(name: str) -> str:
    """The last value of ``name`` at or before each decision of ``grid`` (one row per decision)."""
    return f"""
SELECT g.row, o.t AS t_obs, o.value
FROM grid g ASOF LEFT JOIN (SELECT subject_id, t, value FROM obs WHERE name = '{name}') o
  ON g.subject_id = o.subject_id AND g.t >= o.t
ORDER BY g.row""".strip()
