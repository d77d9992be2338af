/*
description: >-
  The Jira issue each pull request implements: the first key of a known Jira issue found in the
  PR's title, else its branch name, else its body (pattern `issue_key_pattern` in config.settings).
  Strings that look like keys but name no known issue (UTF-8, ISO-8601) do not link.
grain: one row per pull request that references a known Jira issue
primary_key: [repo, pr_number]
columns:
  repo: Repository (owner/name).
  pr_number: Pull request number.
  issue_key: The linked Jira issue.
  link_rule: "Where the key was found: `title`, `branch` or `body`."
*/
with pattern as (
    select max(value) as key_pattern from config.settings where key = 'issue_key_pattern'
),
texts as (
    select repo, pr_number, 'title' as link_rule, 1 as priority, title as body_text
    from staging.stg_github__pull_requests
    union all
    select repo, pr_number, 'branch', 2, branch from staging.stg_github__pull_requests
    union all
    select repo, pr_number, 'body', 3, body from staging.stg_github__pull_requests
),
mentions as (
    select t.repo, t.pr_number, t.link_rule, t.priority, k.issue_key, k.position
    from texts as t
    cross join pattern as p
    cross join unnest(regexp_extract_all(coalesce(t.body_text, ''), p.key_pattern))
        with ordinality as k(issue_key, position)
),
ranked as (
    select
        m.repo,
        m.pr_number,
        m.issue_key,
        m.link_rule,
        row_number() over (partition by m.repo, m.pr_number order by m.priority, m.position) as rank_in_pr
    from mentions as m
    inner join staging.stg_jira__issues as i on i.issue_key = m.issue_key
)
select repo, pr_number, issue_key, link_rule
from ranked
where rank_in_pr = 1
