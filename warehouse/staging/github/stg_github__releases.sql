/*
description: >-
  GitHub releases, one row per release as last loaded (drafts included, with no publication time).
grain: one row per release
primary_key: [release_id]
columns:
  release_id: GitHub's numeric release id.
  repo: Repository (owner/name).
  service: The repository's name, which is the service's name.
  tag: The release's git tag (e.g. `v1.4.0`).
  name: Release title; null when none was given.
  target: The branch or commit SHA the tag was created from (GitHub's `target_commitish`).
  is_draft: The release is a draft (not published).
  is_prerelease: The release is marked as a pre-release.
  author_id: person_id of the account that created the release.
  created_at: When the release's commit was tagged, i.e. the release was created (UTC).
  published_at: When the release was published (UTC); null for a draft.
*/
with ranked as (
    select
        id,
        repo_full_name,
        tag_name,
        name,
        target_commitish,
        draft,
        prerelease,
        author__login,
        created_at,
        published_at,
        row_number() over (partition by id order by _dlt_load_id desc) as recency
    from raw_github.releases
)
select
    id as release_id,
    repo_full_name as repo,
    split_part(repo_full_name, '/', 2) as service,
    tag_name as tag,
    nullif(name, '') as name,
    target_commitish as target,
    coalesce(draft, false) as is_draft,
    coalesce(prerelease, false) as is_prerelease,
    person_id(author__login) as author_id,
    cast(created_at as timestamp with time zone) as created_at,
    cast(published_at as timestamp with time zone) as published_at
from ranked
where recency = 1
