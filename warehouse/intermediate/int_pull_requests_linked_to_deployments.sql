/*
description: >-
  The successful production deployment that first shipped each merged pull request. Two exact
  rules: `compare` (the PR's merge commit is in GitHub's compare of the previous and this deployed
  SHA) and `main_history` (the deployed commit descends from the PR's merge commit on main's
  first-parent history, which also covers services deployed by Jenkins). The earliest deployment
  either rule finds wins; `link_rule` lists the rules that found it.
grain: one row per merged pull request that has been deployed to production
primary_key: [repo, pr_number]
columns:
  repo: Repository (owner/name).
  pr_number: Pull request number.
  deployment_id: The first successful production deployment containing the PR.
  deployed_at: When that deployment finished.
  link_rule: "`compare`, `main_history`, or `compare+main_history` when both agree."
*/
with recursive prod as (
    select deployment_id, repo, sha, finished_at
    from intermediate.int_deployment_attempts_unified
    where environment = 'production' and outcome = 'success'
),
heads as (
    select repo, sha
    from (
        select repo, sha, row_number() over (partition by repo order by committed_at desc, sha) as recency
        from staging.stg_github__commits
    ) as newest
    where recency = 1
),
chain (repo, sha, depth) as (
    select repo, sha, 0 from heads
    union all
    select c.repo, c.first_parent_sha, chain.depth + 1
    from chain
    inner join staging.stg_github__commits as c on c.repo = chain.repo and c.sha = chain.sha
    where c.first_parent_sha is not null
),
positions as (
    select repo, sha, min(depth) as depth from chain group by repo, sha
),
merged as (
    select p.repo, p.pr_number, pos.depth as merge_depth, p.merge_sha
    from staging.stg_github__pull_requests as p
    inner join positions as pos on pos.repo = p.repo and pos.sha = p.merge_sha
    where p.merged_at is not null
),
by_history as (
    select m.repo, m.pr_number, d.deployment_id, d.finished_at, 'main_history' as link_rule
    from merged as m
    inner join positions as pos on pos.repo = m.repo and pos.depth <= m.merge_depth
    inner join prod as d on d.repo = pos.repo and d.sha = pos.sha
),
sequenced as (
    select
        deployment_id, repo, sha, finished_at,
        lag(sha) over (partition by repo order by finished_at, deployment_id) as previous_sha
    from prod
),
by_compare as (
    select p.repo, p.pr_number, s.deployment_id, s.finished_at, 'compare' as link_rule
    from staging.stg_github__deployment_compares as c
    inner join sequenced as s on s.repo = c.repo and s.sha = c.head_sha and s.previous_sha = c.base_sha
    inner join staging.stg_github__pull_requests as p on p.repo = c.repo and p.merge_sha = c.commit_sha
    where p.merged_at is not null
),
candidates as (
    select repo, pr_number, deployment_id, min(finished_at) as deployed_at,
        string_agg(distinct link_rule, '+' order by link_rule) as link_rule
    from (select * from by_history union all select * from by_compare) as found
    group by repo, pr_number, deployment_id
),
ranked as (
    select *, row_number() over (partition by repo, pr_number order by deployed_at, deployment_id) as rank_in_pr
    from candidates
)
select repo, pr_number, deployment_id, deployed_at, link_rule
from ranked
where rank_in_pr = 1
