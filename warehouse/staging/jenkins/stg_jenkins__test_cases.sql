/*
description: >-
  JUnit test case results of finished Jenkins builds that published a test report, with the
  report's status vocabulary reduced to passed / failed / skipped.
grain: one row per test case per build
primary_key: [build_id, suite, class_name, test_name]
columns:
  build_id: "The build that ran the test: `jenkins:build:<job full name>#<build number>`."
  job_full_name: Full name of the build's job.
  build_number: The build's number within its job.
  suite: Test suite name (empty text when the report names none).
  class_name: Test class.
  test_name: Test case name.
  status: "Normalised status: `passed` (PASSED, FIXED), `failed` (FAILED, REGRESSION) or `skipped` (SKIPPED)."
  original_status: The report's status as sent (`PASSED`, `FIXED`, `FAILED`, `REGRESSION`, `SKIPPED`).
  duration_s: How long the test ran, in seconds.
  error_message: The failure's message (`errorDetails`); null when the test did not fail or gave none.
  failing_for_builds: How many builds in a row, up to this one, the test has failed (JUnit `age`); 0 when it did not fail.
  failed_since_build_number: Number of the build where the current run of failures began (JUnit `failedSince`); null when it did not fail.
*/
with ranked as (
    select
        job_full_name,
        build_number,
        suite_name,
        class_name,
        name,
        status,
        duration,
        error_details,
        age,
        failed_since,
        row_number() over (
            partition by job_full_name, build_number, suite_name, class_name, name
            order by _dlt_load_id desc
        ) as recency
    from raw_jenkins.test_cases
)
select
    'jenkins:build:' || job_full_name || '#' || cast(build_number as varchar) as build_id,
    job_full_name,
    build_number,
    suite_name as suite,
    class_name,
    name as test_name,
    case
        when status in ('PASSED', 'FIXED') then 'passed'
        when status in ('FAILED', 'REGRESSION') then 'failed'
        when status = 'SKIPPED' then 'skipped'
        else lower(status)
    end as status,
    status as original_status,
    duration as duration_s,
    error_details as error_message,
    age as failing_for_builds,
    case when failed_since > 0 then failed_since end as failed_since_build_number
from ranked
where recency = 1
