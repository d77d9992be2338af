/*
description: >-
  Commits of each repository's default branch (main's history), one row per repository and commit,
  with the first parent (main's previous commit when the commit was made on main, or the merge's
  base) and the number of parents (2 for a merge commit). People are pseudonymised from the GitHub
  login the commit is linked to, or from the commit's e-mail when GitHub links it to no account.
grain: one row per commit on the default branch
primary_key: [repo, sha]
columns:
  repo: Repository (owner/name).
  sha: Commit SHA.
  author_id: person_id of the commit's author (GitHub login, else the author e-mail's local part).
  committer_id: >-
    person_id of the committer (GitHub login, else the committer e-mail's local part); merges and
    squashes made in GitHub's web UI are committed by GitHub's own `web-flow` account.
  authored_at: When the change was written (the commit's author date, UTC).
  committed_at: When the commit was made (the committer date, UTC).
  message: Full commit message.
  first_parent_sha: The first of the commit's parents (for a merge commit, the base branch's previous head); null for a root commit.
  parent_count: Number of parents (0 for a root commit, 1 for an ordinary or squash commit, 2 or more for a merge commit).
  is_merge: The commit has more than one parent.
*/
with ranked as (
    select
        _dlt_id,
        repo_full_name,
        sha,
        author__login,
        committer__login,
        commit__author__email,
        commit__author__date,
        commit__committer__email,
        commit__committer__date,
        commit__message,
        row_number() over (partition by repo_full_name, sha order by _dlt_load_id desc) as recency
    from raw_github.commits
),
latest as (
    select * from ranked where recency = 1
),
parents as (
    select
        p._dlt_parent_id as commit_row_id,
        count(distinct p._dlt_list_idx) as parent_count,
        min(case when p._dlt_list_idx = 0 then p.sha end) as first_parent_sha
    from raw_github.commits__parents as p
    inner join latest as c on c._dlt_id = p._dlt_parent_id
    group by p._dlt_parent_id
)
select
    c.repo_full_name as repo,
    c.sha,
    person_id(coalesce(c.author__login, c.commit__author__email)) as author_id,
    person_id(coalesce(c.committer__login, c.commit__committer__email)) as committer_id,
    cast(c.commit__author__date as timestamp with time zone) as authored_at,
    cast(c.commit__committer__date as timestamp with time zone) as committed_at,
    c.commit__message as message,
    p.first_parent_sha,
    coalesce(p.parent_count, 0) as parent_count,
    coalesce(p.parent_count, 0) > 1 as is_merge
from latest as c
left join parents as p on p.commit_row_id = c._dlt_id
