/*
description: >-
  Commits listed on each pull request (GitHub lists at most 250 per pull request), one row per
  pull request and commit. People are pseudonymised from the GitHub login the commit is linked to,
  or from the commit's e-mail when GitHub links it to no account.
grain: one row per (pull request, commit)
primary_key: [repo, pr_number, sha]
columns:
  repo: Repository (owner/name).
  pr_number: The pull request's number.
  pull_request_github_id: GitHub's numeric id of the pull request.
  sha: Commit SHA.
  author_id: person_id of the commit's author (GitHub login, else the author e-mail's local part).
  committer_id: person_id of the committer (GitHub login, else the committer e-mail's local part).
  authored_at: When the change was written (the commit's author date, UTC).
  committed_at: When the commit was made (the committer date, UTC; later than authored_at after a rebase).
  message: Full commit message.
*/
with ranked as (
    select
        pull_request_id,
        pull_request_number,
        repo_full_name,
        sha,
        author__login,
        committer__login,
        commit__author__email,
        commit__author__date,
        commit__committer__email,
        commit__committer__date,
        commit__message,
        row_number() over (
            partition by repo_full_name, pull_request_number, sha order by _dlt_load_id desc, pull_request_id desc
        ) as recency
    from raw_github.pull_request_commits
)
select
    repo_full_name as repo,
    pull_request_number as pr_number,
    pull_request_id as pull_request_github_id,
    sha,
    person_id(coalesce(author__login, commit__author__email)) as author_id,
    person_id(coalesce(committer__login, commit__committer__email)) as committer_id,
    cast(commit__author__date as timestamp with time zone) as authored_at,
    cast(commit__committer__date as timestamp with time zone) as committed_at,
    commit__message as message
from ranked
where recency = 1
