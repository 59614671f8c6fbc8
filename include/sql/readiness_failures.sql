-- The failed readiness checks of one refresh run.
SELECT check_name,
       subject,
       detail
FROM readiness_results
WHERE primary_region = :region
  AND run_id = :run_id
  AND NOT passed
ORDER BY check_name, subject
