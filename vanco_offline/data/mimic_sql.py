"""The SQL of the MIMIC-IV extraction (:mod:`vanco_offline.data.mimic`) and the itemids it uses.

:func:`extraction_sql` is what ``extract_mimic`` runs, over views named after the MIMIC-IV
tables (``vanco-offline extract mimic --print-sql``; data/README.md shows it).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MIMIC_ITEMS", "extraction_sql"]

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

#: table -> (module folder, columns read, required)
_LBS_TO_KG = 0.45359237
_INCH_TO_CM = 2.54


def _in(items: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in items)

def extraction_sql(
    interval_h: float = 12.0, max_days: float = 7.0, optional: Mapping[str, bool] | None = None
) -> str:
    """The query :func:`extract_mimic` runs over views named after the MIMIC-IV tables.

    ``optional`` says which optional tables exist (``procedureevents``, ``omr``); an
    absent one contributes nothing.
    """
    have = {"procedureevents": True, "omr": True, "prescriptions": True, **dict(optional or {})}
    h, cap = float(interval_h), float(max_days) * 24.0
    items = MIMIC_ITEMS
    dialysis_proc = (
        f"""
    SELECT p.stay_id, p.starttime AS t0, p.endtime AS t1 FROM procedureevents p
    WHERE p.itemid IN ({_in(items['dialysis_procedure'])})"""
        if have["procedureevents"]
        else "\n    SELECT NULL::BIGINT AS stay_id, NULL::TIMESTAMP AS t0, NULL::TIMESTAMP AS t1 WHERE false"
    )
    omr = (
        f"""
    SELECT o.subject_id, o.chartdate::TIMESTAMP AS t,
           CASE WHEN o.result_name = 'Weight (Lbs)' THEN 'weight_kg' ELSE 'height_cm' END AS name,
           TRY_CAST(o.result_value AS DOUBLE)
             * CASE WHEN o.result_name = 'Weight (Lbs)' THEN {_LBS_TO_KG} ELSE {_INCH_TO_CM} END AS value
    FROM omr o WHERE o.result_name IN ('Weight (Lbs)', 'Height (Inches)')"""
        if have["omr"]
        else "\n    SELECT NULL::BIGINT AS subject_id, NULL::TIMESTAMP AS t, NULL AS name, "
        "NULL::DOUBLE AS value WHERE false"
    )
    rx_mg = (
        """SELECT CASE lower(p.dose_unit_rx) WHEN 'mg' THEN TRY_CAST(p.dose_val_rx AS DOUBLE)
                                        WHEN 'g' THEN TRY_CAST(p.dose_val_rx AS DOUBLE) * 1000 END
                 FROM prescriptions p
                 WHERE p.hadm_id = s.hadm_id AND p.starttime <= i.starttime
                   AND (p.stoptime IS NULL OR p.stoptime > i.starttime)
                   AND lower(p.drug) LIKE '%vancomycin%' AND upper(p.route) LIKE 'IV%'
                 ORDER BY p.starttime DESC LIMIT 1"""
        if have["prescriptions"]
        else "NULL::DOUBLE"
    )
    return f"""
-- Vancomycin administrations in mg (inputevents 225798, grams converted, rewritten orders out).
-- An amount counted in doses ('dose') takes its mg from the IV vancomycin prescription of the
-- admission active at that time (the latest started), as MetaVision charts antibiotics so.
CREATE OR REPLACE TEMP TABLE admin AS
SELECT i.stay_id, i.starttime AS t,
       CASE lower(i.amountuom) WHEN 'mg' THEN i.amount WHEN 'grams' THEN i.amount * 1000
            WHEN 'g' THEN i.amount * 1000
            WHEN 'dose' THEN i.amount * ({rx_mg}) END AS dose_mg,
       lower(i.amountuom) AS uom,
       coalesce(i.statusdescription, '') = 'Rewritten' AS rewritten
FROM inputevents i JOIN icustays s USING (stay_id)
WHERE i.itemid IN ({_in(items['vancomycin'])});

-- One episode per ICU stay: from the first administration in mg, within the stay and max_days
CREATE OR REPLACE TEMP TABLE episodes AS
SELECT s.stay_id, s.subject_id, s.hadm_id, s.intime, s.outtime, a.t0,
       least(s.outtime, a.t0 + INTERVAL ({cap}) HOUR) AS t_end,
       s.outtime <= a.t0 + INTERVAL ({cap}) HOUR AS left_icu
FROM icustays s
JOIN (SELECT stay_id, min(t) AS t0 FROM admin WHERE dose_mg IS NOT NULL AND NOT rewritten
      GROUP BY stay_id) a USING (stay_id);

-- Decision grid: t0, t0 + {h:g} h, ... while inside the episode
CREATE OR REPLACE TEMP TABLE grid AS
SELECT e.*, k AS step, {h} * k AS time_h, e.t0 + INTERVAL ({h} * k) HOUR AS t
FROM episodes e,
     LATERAL (SELECT unnest(range(0, CAST(floor(epoch(e.t_end - e.t0) / 3600 / {h}) AS BIGINT) + 1)) AS k);

-- Every charted value, by stay, as (stay_id, t, name, value)
CREATE OR REPLACE TEMP TABLE obs AS
SELECT c.stay_id, c.charttime AS t,
       CASE WHEN c.itemid = {items['heart_rate'][0]} THEN 'heart_rate'
            WHEN c.itemid IN ({_in(items['sbp'])}) THEN 'sbp'
            WHEN c.itemid IN ({_in(items['temperature_c'] + items['temperature_f'])}) THEN 'temperature'
            WHEN c.itemid IN ({_in(items['dialysis_chart'])}) THEN 'dialysis'
            WHEN c.itemid = {items['weight_kg'][0]} THEN 'weight_kg'
            WHEN c.itemid = {items['height_cm'][0]} THEN 'height_cm' END AS name,
       CASE WHEN c.itemid IN ({_in(items['temperature_f'])}) THEN (c.valuenum - 32) * 5 / 9
            ELSE c.valuenum END AS value
FROM chartevents c
WHERE c.itemid IN ({_in(items['heart_rate'] + items['sbp'] + items['temperature_c'] + items['temperature_f']
                        + items['dialysis_chart'] + items['weight_kg'] + items['height_cm'])})
  AND c.stay_id IN (SELECT stay_id FROM episodes)
UNION ALL
SELECT e.stay_id, l.charttime AS t,
       CASE l.itemid WHEN {items['vanco_level'][0]} THEN 'vanco_level'
                     WHEN {items['creatinine'][0]} THEN 'creatinine'
                     WHEN {items['bun'][0]} THEN 'bun' WHEN {items['wbc'][0]} THEN 'wbc' END AS name,
       l.valuenum AS value
FROM labevents l JOIN episodes e ON l.hadm_id = e.hadm_id
WHERE l.itemid IN ({_in(items['vanco_level'] + items['creatinine'] + items['bun'] + items['wbc'])})
  AND l.valuenum IS NOT NULL AND l.charttime <= e.t_end;

CREATE OR REPLACE TEMP TABLE dialysis_runs AS {dialysis_proc};
CREATE OR REPLACE TEMP TABLE omr_values AS {omr};

-- Per stay covariates: chartevents first, else the omr value nearest to ICU admission
CREATE OR REPLACE TEMP TABLE covariates AS
SELECT e.stay_id,
       coalesce((SELECT o.value FROM obs o WHERE o.stay_id = e.stay_id AND o.name = 'weight_kg'
                 AND o.value IS NOT NULL ORDER BY o.t LIMIT 1),
                (SELECT m.value FROM omr_values m WHERE m.subject_id = e.subject_id AND m.name = 'weight_kg'
                 AND m.value IS NOT NULL ORDER BY abs(epoch(m.t - date_trunc('day', e.intime))), m.t LIMIT 1))
         AS weight_kg,
       coalesce((SELECT o.value FROM obs o WHERE o.stay_id = e.stay_id AND o.name = 'height_cm'
                 AND o.value IS NOT NULL ORDER BY o.t LIMIT 1),
                (SELECT m.value FROM omr_values m WHERE m.subject_id = e.subject_id AND m.name = 'height_cm'
                 AND m.value IS NOT NULL ORDER BY abs(epoch(m.t - date_trunc('day', e.intime))), m.t LIMIT 1))
         AS height_cm,
       p.anchor_age + (year(e.t0) - p.anchor_year) AS age,
       CASE upper(p.gender) WHEN 'F' THEN 1 WHEN 'M' THEN 0 END AS sex
FROM episodes e JOIN patients p ON p.subject_id = e.subject_id;

-- The table: one row per decision
SELECT g.stay_id, g.step, g.time_h,
       (SELECT o.value FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'vanco_level' AND o.t <= g.t
          AND o.value IS NOT NULL ORDER BY o.t DESC LIMIT 1) AS vanco_level,
       {", ".join(
           f"(SELECT o.value FROM obs o WHERE o.stay_id = g.stay_id AND o.name = '{name}'"
           f" AND o.value IS NOT NULL AND o.t <= g.t AND o.t > g.t - INTERVAL ({h}) HOUR"
           f" ORDER BY o.t DESC LIMIT 1) AS {name}"
           for name in ("creatinine", "wbc", "bun", "temperature", "sbp", "heart_rate")
       )},
       coalesce((SELECT sum(a.dose_mg) FROM admin a WHERE a.stay_id = g.stay_id AND NOT a.rewritten
                 AND a.t >= g.t AND a.t < g.t + INTERVAL ({h}) HOUR), 0) AS dose_mg,
       g.left_icu AND g.step = max(g.step) OVER (PARTITION BY g.stay_id) AS done,
       EXISTS (SELECT 1 FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'vanco_level'
               AND o.value IS NOT NULL AND o.t <= g.t AND o.t > g.t - INTERVAL ({h}) HOUR) AS level_measured,
       c.weight_kg, c.age, c.sex, c.height_cm,
       CASE WHEN EXISTS (SELECT 1 FROM obs o WHERE o.stay_id = g.stay_id AND o.name = 'dialysis'
                         AND o.t <= g.t AND o.t > g.t - INTERVAL 24 HOUR)
              OR EXISTS (SELECT 1 FROM dialysis_runs d WHERE d.stay_id = g.stay_id
                         AND d.t0 <= g.t AND d.t1 > g.t - INTERVAL 24 HOUR) THEN 1 ELSE 0 END AS dialysis,
       g.subject_id, g.hadm_id, g.t AS decision_time
FROM grid g LEFT JOIN covariates c USING (stay_id)
ORDER BY g.stay_id, g.step;
""".strip()
