/*
description: >-
  GitHub repositories of the organisation (or the selected ones), one row per repository as last
  loaded. A repository is one service: its name is the service name the other tools use.
grain: one row per repository
primary_key: [repo]
columns:
  repo: Repository as owner/name (e.g. `acme/gateway`); the key other GitHub models join on.
  repo_id: GitHub's numeric repository id (stable across renames).
  service: The repository's name (the part after the owner), which is the service's name in every tool.
  owner: Owner of the repository (the organisation's login).
  default_branch: The branch main's history is read from (e.g. `main`).
  is_private: The repository is private.
  visibility: "`public`, `private` or `internal`."
  is_archived: The repository is archived (read-only).
  language: GitHub's detected main language; null when none.
  created_at: When the repository was created (UTC).
  updated_at: Last change to the repository record (UTC).
  pushed_at: Last push to any branch (UTC); null for an empty repository.
*/
with ranked as (
    select
        id,
        name,
        full_name,
        owner__login,
        default_branch,
        private,
        visibility,
        archived,
        language,
        created_at,
        updated_at,
        pushed_at,
        row_number() over (partition by full_name order by _dlt_load_id desc, id desc) as recency
    from raw_github.repositories
)
select
    full_name as repo,
    id as repo_id,
    coalesce(name, split_part(full_name, '/', 2)) as service,
    coalesce(owner__login, split_part(full_name, '/', 1)) as owner,
    default_branch,
    private as is_private,
    lower(visibility) as visibility,
    archived as is_archived,
    language,
    cast(created_at as timestamp with time zone) as created_at,
    cast(updated_at as timestamp with time zone) as updated_at,
    cast(pushed_at as timestamp with time zone) as pushed_at
from ranked
where recency = 1
