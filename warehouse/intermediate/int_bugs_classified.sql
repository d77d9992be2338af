/*
description: >-
  Each Jira bug classified as escaped (found in production) or caught before release. Escaped
  when created after the first production deployment of the feature it belongs to (any merged
  PR of the feature shipped), or when one of its affected versions was already released.
grain: one row per bug
primary_key: [issue_key]
columns:
  issue_key: The bug.
  feature_key: The feature (epic) it belongs to, if any.
  created_at: When the bug was reported.
  feature_first_deployed_at: First production deployment of any PR of its feature.
  escaped: True when the bug escaped to production.
  link_rule: "`after_first_deployment`, `affected_version_released`, or `caught_before_release`."
*/
with pr_features as (
    select
        l.repo,
        l.pr_number,
        case when i.issue_type = 'Epic' then i.issue_key else e.epic_key end as feature_key
    from intermediate.int_pull_requests_linked_to_issues as l
    inner join staging.stg_jira__issues as i on i.issue_key = l.issue_key
    left join intermediate.int_issues_linked_to_epics as e on e.issue_key = l.issue_key
),
first_deployed as (
    select f.feature_key, min(d.deployed_at) as first_deployed_at
    from pr_features as f
    inner join intermediate.int_pull_requests_linked_to_deployments as d
        on d.repo = f.repo and d.pr_number = f.pr_number
    where f.feature_key is not null
    group by f.feature_key
),
affected_released as (
    select iv.issue_key, bool_or(cast(b.created_at as date) > v.release_date) as released
    from staging.stg_jira__issue_versions as iv
    inner join staging.stg_jira__versions as v on v.version_id = iv.version_id
    inner join staging.stg_jira__issues as b on b.issue_key = iv.issue_key
    where iv.relation = 'affected'
    group by iv.issue_key
),
bugs as (
    select
        b.issue_key,
        e.epic_key as feature_key,
        b.created_at,
        fd.first_deployed_at as feature_first_deployed_at,
        coalesce(b.created_at > fd.first_deployed_at, false) as after_deployment,
        coalesce(ar.released, false) as version_released
    from staging.stg_jira__issues as b
    left join intermediate.int_issues_linked_to_epics as e on e.issue_key = b.issue_key
    left join first_deployed as fd on fd.feature_key = e.epic_key
    left join affected_released as ar on ar.issue_key = b.issue_key
    where b.issue_type = 'Bug'
)
select
    issue_key,
    feature_key,
    created_at,
    feature_first_deployed_at,
    after_deployment or version_released as escaped,
    case
        when after_deployment then 'after_first_deployment'
        when version_released then 'affected_version_released'
        else 'caught_before_release'
    end as link_rule
from bugs
