/*
description: >-
  Jira sprints of every scrum board (Agile sprint list), one row per sprint as last loaded. A
  planned sprint has no dates yet; the end is the planned end, `complete_at` when it was closed.
grain: one row per sprint
primary_key: [sprint_id]
columns:
  sprint_id: Jira sprint id.
  board_id: The board the sprint was created on (originBoardId).
  name: Sprint name.
  state: "`future` (planned), `active` or `closed`."
  goal: Sprint goal.
  start_at: When the sprint started (UTC); null while planned.
  end_at: Planned end of the sprint (UTC); null while planned.
  complete_at: When the sprint was completed (UTC); null until closed.
*/
with ranked as (
    select
        s.*,
        row_number() over (partition by s.id order by s._dlt_load_id desc) as load_rank
    from raw_jira.sprints as s
)
select
    cast(id as bigint) as sprint_id,
    cast(origin_board_id as bigint) as board_id,
    name,
    lower(state) as state,
    goal,
    cast(start_date as timestamp with time zone) as start_at,
    cast(end_date as timestamp with time zone) as end_at,
    cast(complete_date as timestamp with time zone) as complete_at
from ranked
where load_rank = 1
