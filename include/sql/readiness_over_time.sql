-- One row per refresh run of a region: how many readiness checks ran, how many failed, and whether the region
-- was ready (every check passed).
SELECT run_id,
       MIN(checked_at) AS checked_at,
       MAX(blueprint_version) AS blueprint_version,
       COUNT(*) AS checks,
       SUM(CASE WHEN passed THEN 0 ELSE 1 END) AS failures,
       CASE WHEN SUM(CASE WHEN passed THEN 0 ELSE 1 END) = 0 THEN 1 ELSE 0 END AS ready
FROM readiness_results
WHERE primary_region = :region
GROUP BY run_id
ORDER BY MIN(checked_at), run_id
