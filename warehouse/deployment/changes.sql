/*
description: >-
  Changes (merged pull requests) and the production deployment that first shipped them, with the
  DORA lead time: deployment finished − first commit authored.
grain: one row per deployed merged pull request
primary_key: [repo, pr_number]
columns:
  repo: Repository (owner/name).
  pr_number: Pull request number.
  issue_key: Linked Jira issue.
  feature_key: Feature (epic) of the linked issue.
  deployment_id: First successful production deployment containing the PR.
  link_rule: "`compare`, `main_history` or `compare+main_history`."
  first_commit_at: Earliest authored time of the PR's commits.
  merged_at: When the PR was merged.
  deployed_at: When the deployment finished.
  lead_time_hours: Hours from first_commit_at to deployed_at.
checks:
  link_rule:
    isin: [compare, main_history, compare+main_history]
*/
select
    d.repo,
    d.pr_number,
    p.issue_key,
    p.feature_key,
    d.deployment_id,
    d.link_rule,
    p.first_commit_at,
    p.merged_at,
    d.deployed_at,
    date_diff('second', p.first_commit_at, d.deployed_at) / 3600.0 as lead_time_hours
from intermediate.int_pull_requests_linked_to_deployments as d
inner join development.pull_requests as p on p.repo = d.repo and p.pr_number = d.pr_number
