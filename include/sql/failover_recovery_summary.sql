-- Recovery times per primary region, kind (failover | failback: failback rows have ids 'fb-…') and mode.
SELECT primary_region,
       CASE WHEN failover_id LIKE 'fb-%' THEN 'failback' ELSE 'failover' END AS kind,
       mode,
       COUNT(*) AS failovers,
       SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
       AVG(recovery_seconds) AS mean_recovery_seconds,
       MAX(recovery_seconds) AS max_recovery_seconds
FROM failover_events
GROUP BY primary_region, CASE WHEN failover_id LIKE 'fb-%' THEN 'failback' ELSE 'failover' END, mode
ORDER BY primary_region, kind, mode
