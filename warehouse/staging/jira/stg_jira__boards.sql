/*
description: Jira Agile boards, one row per board as last loaded, with the project of the board's location.
grain: one row per board
primary_key: [board_id]
columns:
  board_id: Jira board id.
  name: Board name.
  board_type: "`scrum`, `kanban` or `simple`."
  project_id: Jira's numeric id of the project the board is located in.
  project_key: Key of the project the board is located in; null for a board not located in a project.
*/
with ranked as (
    select
        b.*,
        row_number() over (partition by b.id order by b._dlt_load_id desc) as load_rank
    from raw_jira.boards as b
)
select
    cast(id as bigint) as board_id,
    name,
    type as board_type,
    cast(location__project_id as bigint) as project_id,
    location__project_key as project_key
from ranked
where load_rank = 1
