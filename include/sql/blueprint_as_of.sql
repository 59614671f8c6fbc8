-- The blueprint version of a region that was current at the given instant (bind parameter "at").
SELECT version,
       valid_from,
       valid_to,
       content_hash,
       payload,
       run_id
FROM blueprint_versions
WHERE primary_region = :region
  AND valid_from <= :at
  AND (valid_to IS NULL OR valid_to > :at)
