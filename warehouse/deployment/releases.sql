/*
description: Releases from both tools in one list, GitHub releases (tags) and Jira fix versions.
grain: one row per release
primary_key: [release_id]
columns:
  release_id: github:release:<id> or jira:version:<id>.
  system: "`github` or `jira`."
  scope: Repository (GitHub) or Jira project the release belongs to.
  name: Release name or version name.
  released_at: When it was published (GitHub) or its release date (Jira, midnight UTC).
  is_released: Published (GitHub) or marked released (Jira).
*/
select
    'github:release:' || cast(release_id as varchar) as release_id,
    'github' as system,
    repo as scope,
    coalesce(name, tag) as name,
    published_at as released_at,
    published_at is not null as is_released
from staging.stg_github__releases
union all
select
    'jira:version:' || cast(version_id as varchar),
    'jira',
    project_key,
    name,
    cast(release_date as timestamptz),
    is_released
from staging.stg_jira__versions
