/*
description: >-
  Jenkins builds (runs) of every job: CI builds of multibranch branch jobs and builds of deployment
  jobs alike, with the git revision they built (BuildData) and what started them (causes). Times
  are UTC; a build still running has result `in_progress` and no finish time.
grain: one row per Jenkins build
primary_key: [build_id]
columns:
  build_id: "Cross-tool build id: `jenkins:build:<job full name>#<build number>`."
  job_full_name: Full name of the job the build belongs to (e.g. `ci/indexer/main`, `deploy/gateway-deploy`).
  build_number: The build's number within its job.
  repo: >-
    Repository built, owner/name, from the git remote URL of the build's BuildData
    (`https://github.com/acme/gateway.git` → `acme/gateway`); null when the build recorded no git remote.
  service: The repository's name (the part of `repo` after the owner), which is the service's name; null without a repo.
  started_at: When the build started (Jenkins `timestamp`, UTC).
  finished_at: When the build finished (start plus `duration`); null while building.
  duration_ms: How long the build ran, in milliseconds; null while building (Jenkins reports 0 then).
  estimated_duration_ms: Jenkins' estimate of the build's duration in milliseconds (mean of recent builds); null when Jenkins has none.
  result: "Normalised result: `success`, `failure`, `unstable`, `aborted`, `not_built`, or `in_progress` while building."
  original_result: Jenkins' result as sent (`SUCCESS`, `FAILURE`, `UNSTABLE`, `ABORTED`, `NOT_BUILT`); null while building.
  is_building: Whether the build was still running when loaded (Jenkins `building`, or no result yet).
  sha: The commit the build checked out (BuildData `lastBuiltRevision.SHA1`); null without git data.
  branch: >-
    Branch of the checked-out revision as Jenkins names it, with `refs/heads/`, `refs/remotes/origin/` or
    `origin/` removed (`main`, `PR-7`; `detached` for a pinned commit).
  trigger: "`person` when a user started the build (a `hudson.model.Cause$UserIdCause`), otherwise `automation`."
  triggered_by_id: The person who started the build (pseudonymised Jenkins user id); null for automation or an anonymous user.
  cause_class: Class of the deciding cause (the user cause when there is one, else the first), e.g. `jenkins.branch.BranchEventCause`.
  upstream_build_id: "The build that triggered this one (`hudson.model.Cause$UpstreamCause`) as `jenkins:build:<job>#<n>`; null otherwise."
  build_class: Jenkins' Java class of the build, e.g. `org.jenkinsci.plugins.workflow.job.WorkflowRun`.
  url: The build's URL on the Jenkins controller.
  queue_id: Jenkins' queue item id of the build.
  test_total_count: Test cases in the build's JUnit report; null when it published none.
  test_fail_count: Failed test cases in the build's JUnit report; null when it published none.
  test_skip_count: Skipped test cases in the build's JUnit report; null when it published none.
*/
with ranked as (
    select
        _dlt_id,
        job_full_name,
        number,
        _class,
        url,
        timestamp,
        duration,
        estimated_duration,
        building,
        result,
        queue_id,
        test_result__total_count,
        test_result__fail_count,
        test_result__skip_count,
        row_number() over (partition by job_full_name, number order by _dlt_load_id desc) as recency
    from raw_jenkins.builds
),
builds as (
    select
        *,
        coalesce(building, false) or result is null as still_building
    from ranked
    where recency = 1
),
remotes as (
    select
        _dlt_parent_id as build_data_id,
        regexp_extract(value, '([^/:]+/[^/]+?)(\.git)?/*$', 1) as repo
    from raw_jenkins.builds__build_data__remote_urls
    where _dlt_list_idx = 0
),
revision_branches as (
    select
        _dlt_parent_id as build_data_id,
        regexp_replace(name, '^(refs/heads/|refs/remotes/origin/|origin/)', '') as branch
    from raw_jenkins.builds__build_data__last_built_revision__branch
    where _dlt_list_idx = 0
),
git as (
    -- A pipeline using shared libraries records one BuildData per repository it checked out: prefer
    -- the one whose repository names the job (`ci/<repo>/…`, `<repo>-deploy`), else the last checkout.
    select
        d._dlt_parent_id as build_row_id,
        nullif(d.last_built_revision__sha1, '') as sha,
        nullif(r.repo, '') as repo,
        br.branch,
        row_number() over (
            partition by d._dlt_parent_id
            order by
                case
                    when position('/' || split_part(r.repo, '/', 2) || '/' in '/' || b.job_full_name || '/') > 0
                        or position('/' || split_part(r.repo, '/', 2) || '-' in '/' || b.job_full_name) > 0
                        then 0
                    else 1
                end,
                d._dlt_list_idx desc
        ) as preference
    from raw_jenkins.builds__build_data as d
    inner join builds as b on b._dlt_id = d._dlt_parent_id
    left join remotes as r on r.build_data_id = d._dlt_id
    left join revision_branches as br on br.build_data_id = d._dlt_id
),
causes as (
    select
        _dlt_parent_id as build_row_id,
        _class as cause_class,
        user_id,
        row_number() over (
            partition by _dlt_parent_id
            order by case when _class = 'hudson.model.Cause$UserIdCause' then 0 else 1 end, _dlt_list_idx
        ) as preference
    from raw_jenkins.builds__causes
),
upstream as (
    select
        _dlt_parent_id as build_row_id,
        'jenkins:build:' || upstream_project || '#' || cast(upstream_build as varchar) as upstream_build_id,
        row_number() over (partition by _dlt_parent_id order by _dlt_list_idx) as preference
    from raw_jenkins.builds__causes
    where upstream_project is not null and upstream_build is not null
)
select
    'jenkins:build:' || b.job_full_name || '#' || cast(b.number as varchar) as build_id,
    b.job_full_name,
    b.number as build_number,
    g.repo,
    split_part(g.repo, '/', 2) as service,
    to_timestamp(b.timestamp / 1000.0) as started_at,
    case when not b.still_building then to_timestamp((b.timestamp + b.duration) / 1000.0) end as finished_at,
    case when not b.still_building then b.duration end as duration_ms,
    case when b.estimated_duration >= 0 then b.estimated_duration end as estimated_duration_ms,
    case when b.still_building then 'in_progress' else lower(b.result) end as result,
    b.result as original_result,
    b.still_building as is_building,
    g.sha,
    g.branch,
    case when c.cause_class = 'hudson.model.Cause$UserIdCause' then 'person' else 'automation' end as trigger,
    case when c.cause_class = 'hudson.model.Cause$UserIdCause' then person_id(c.user_id) end as triggered_by_id,
    c.cause_class,
    u.upstream_build_id,
    b._class as build_class,
    b.url,
    b.queue_id,
    b.test_result__total_count as test_total_count,
    b.test_result__fail_count as test_fail_count,
    b.test_result__skip_count as test_skip_count
from builds as b
left join git as g on g.build_row_id = b._dlt_id and g.preference = 1
left join causes as c on c.build_row_id = b._dlt_id and c.preference = 1
left join upstream as u on u.build_row_id = b._dlt_id and u.preference = 1
