/*
description: >-
  Test case results per build (JUnit reports from Jenkins). A test is flaky on a commit when it
  both failed and passed on that same commit; every run of it on that commit carries the flag.
grain: one row per test case per build
primary_key: [build_id, suite, class_name, test_name]
columns:
  build_id: The build that ran the test.
  service: Service under test.
  sha: Commit tested.
  suite: Test suite.
  class_name: Test class.
  test_name: Test name.
  status: "`passed`, `failed` or `skipped`."
  duration_s: Seconds.
  is_flaky: The test failed and passed on the same commit.
checks:
  status:
    isin: [passed, failed, skipped]
*/
with runs as (
    select t.build_id, b.service, b.sha, t.suite, t.class_name, t.test_name, t.status, t.duration_s
    from staging.stg_jenkins__test_cases as t
    inner join staging.stg_jenkins__builds as b on b.build_id = t.build_id
),
flaky as (
    select service, sha, class_name, test_name
    from runs
    group by service, sha, class_name, test_name
    having count(case when status = 'failed' then 1 end) > 0 and count(case when status = 'passed' then 1 end) > 0
)
select
    r.build_id,
    r.service,
    r.sha,
    r.suite,
    r.class_name,
    r.test_name,
    r.status,
    r.duration_s,
    f.test_name is not null as is_flaky
from runs as r
left join flaky as f
    on f.service = r.service and f.sha = r.sha and f.class_name = r.class_name and f.test_name = r.test_name
