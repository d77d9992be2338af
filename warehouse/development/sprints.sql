/*
description: Sprints with the issues planned into them and how many were done before the sprint ended.
grain: one row per sprint
primary_key: [sprint_id]
columns:
  sprint_id: Jira sprint id.
  board_id: Agile board.
  project_key: Project of the board.
  name: Sprint name.
  state: "`future`, `active` or `closed`."
  start_at: Sprint start.
  end_at: Planned sprint end.
  complete_at: When the sprint was completed.
  issues_planned: Issues in the sprint.
  issues_done: Of those, done before the sprint ended (or completed).
*/
select
    s.sprint_id,
    s.board_id,
    b.project_key,
    s.name,
    s.state,
    s.start_at,
    s.end_at,
    s.complete_at,
    count(si.issue_key) as issues_planned,
    count(case when i.done_at <= coalesce(s.complete_at, s.end_at) then 1 end) as issues_done
from staging.stg_jira__sprints as s
left join staging.stg_jira__boards as b on b.board_id = s.board_id
left join staging.stg_jira__issue_sprints as si on si.sprint_id = s.sprint_id
left join development.issues as i on i.issue_key = si.issue_key
group by s.sprint_id, s.board_id, b.project_key, s.name, s.state, s.start_at, s.end_at, s.complete_at
