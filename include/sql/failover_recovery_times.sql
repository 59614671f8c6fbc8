-- Every failover (optionally of one primary region), newest first, with its recovery time: seconds from
-- detection (or the trigger, for manual runs) to traffic served by the shadow.
SELECT failover_id,
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
