-- Recovery times per primary region and mode.
SELECT primary_region,
       mode,
       COUNT(*) AS failovers,
       SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
       AVG(recovery_seconds) AS mean_recovery_seconds,
       MAX(recovery_seconds) AS max_recovery_seconds
FROM failover_events
GROUP BY primary_region, mode
ORDER BY primary_region, mode
