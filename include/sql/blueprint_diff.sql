-- The change chain between two versions of a region's blueprint: each version in (from, to] with the diff
-- summary stored against its predecessor, plus both endpoints' content hashes for a quick equality check.
SELECT v.version,
       v.valid_from,
       v.run_id,
       v.diff_summary,
       f.content_hash AS from_hash,
       t.content_hash AS to_hash
FROM blueprint_versions v
JOIN blueprint_versions f ON f.primary_region = v.primary_region AND f.version = :from_version
JOIN blueprint_versions t ON t.primary_region = v.primary_region AND t.version = :to_version
WHERE v.primary_region = :region
  AND v.version > :from_version
  AND v.version <= :to_version
ORDER BY v.version
