/*
description: Jira bugs, each escaped to production or caught before release, with the rule that decided.
grain: one row per bug
primary_key: [issue_key]
columns:
  issue_key: The bug.
  project_key: Jira project.
  feature_key: Feature (epic) it belongs to, if any.
  priority: Priority.
  status: "`todo`, `in_progress` or `done`."
  created_at: When it was reported.
  done_at: When it was fixed (first moved to done).
  feature_first_deployed_at: First production deployment of its feature.
  escaped: Escaped to production.
  escape_rule: "`after_first_deployment`, `affected_version_released` or `caught_before_release`."
checks:
  escape_rule:
    isin: [after_first_deployment, affected_version_released, caught_before_release]
*/
select
    b.issue_key,
    i.project_key,
    b.feature_key,
    i.priority,
    i.status,
    b.created_at,
    i.done_at,
    b.feature_first_deployed_at,
    b.escaped,
    b.link_rule as escape_rule
from intermediate.int_bugs_classified as b
inner join development.issues as i on i.issue_key = b.issue_key
