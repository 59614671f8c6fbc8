-- Every blueprint version of a primary region, oldest first (SCD2: valid_from inclusive, valid_to exclusive).
SELECT version,
       shadow_region,
       valid_from,
       valid_to,
       is_current,
       content_hash,
       fingerprint_id,
       graph_id,
       run_id,
       primary_inventory_hash,
       diff_summary
FROM blueprint_versions
WHERE primary_region = :region
ORDER BY version
