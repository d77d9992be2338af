/*
description: >-
  The commits each CI build built: a Jenkins build's revision (lastBuiltRevision) and the commits in
  its changeSets, or a GitHub Actions run's head SHA.
grain: one row per (build, commit)
primary_key: [build_id, sha]
columns:
  build_id: The build (jenkins:build:<job>#<n> or github:build:<run id>).
  repo: Repository the commit belongs to (owner/name).
  sha: Commit SHA.
  link_rule: "`revision` (the SHA the build checked out), `changeset` (listed in its changeSets) or `head_sha` (Actions)."
*/
with links as (
    select build_id, repo, sha, 'revision' as link_rule, 1 as priority
    from staging.stg_jenkins__builds
    where sha is not null
    union all
    select c.build_id, b.repo, c.sha, 'changeset', 2
    from staging.stg_jenkins__build_changesets as c
    inner join staging.stg_jenkins__builds as b on b.build_id = c.build_id
    union all
    select build_id, repo, head_sha, 'head_sha', 1
    from staging.stg_github__workflow_runs
    where head_sha is not null
),
ranked as (
    select *, row_number() over (partition by build_id, sha order by priority) as rank_in_build
    from links
)
select build_id, repo, sha, link_rule
from ranked
where rank_in_build = 1
