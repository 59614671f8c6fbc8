-- Every failover and failback (optionally of one primary region), newest first, with its recovery time:
-- seconds from detection (or the trigger, for manual runs) to traffic served by the shadow (a failback: to
-- traffic back on the primary). Failback rows have ids 'fb-…'.
SELECT failover_id,
       CASE WHEN failover_id LIKE 'fb-%' THEN 'failback' ELSE 'failover' END AS kind,
       primary_region,
       shadow_region,
       mode,
       "trigger",
       outcome,
       blueprint_version,
       detected_at,
       started_at,
       finished_at,
       recovery_seconds
FROM failover_events
WHERE (:region IS NULL OR primary_region = :region)
ORDER BY started_at DESC, id DESC
