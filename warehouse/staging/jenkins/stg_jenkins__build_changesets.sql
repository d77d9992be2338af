/*
description: >-
  Commits listed in the change sets of Jenkins builds (what changed since the job's previous
  build), one row per build and commit SHA.
grain: one row per (build, commit)
primary_key: [build_id, sha]
columns:
  build_id: "The build: `jenkins:build:<job full name>#<build number>`."
  job_full_name: Full name of the build's job.
  build_number: The build's number within its job.
  sha: The commit's SHA (`commitId`).
  scm_kind: The version control system of the change set (`git`).
  committed_at: When the commit was made (change set `timestamp`, UTC); null when Jenkins could not tell.
  author_id: The commit's author (pseudonymised from the author's e-mail, else full name).
  message: First line of the commit message.
*/
with builds as (
    select
        _dlt_id,
        job_full_name,
        number,
        row_number() over (partition by job_full_name, number order by _dlt_load_id desc) as recency
    from raw_jenkins.builds
),
items as (
    select
        b.job_full_name,
        b.number,
        i.commit_id,
        cs.kind,
        i.timestamp,
        i.author_email,
        i.author__full_name,
        i.msg,
        row_number() over (
            partition by b.job_full_name, b.number, i.commit_id
            order by cs._dlt_list_idx, i._dlt_list_idx
        ) as occurrence
    from raw_jenkins.builds__change_sets__items as i
    inner join raw_jenkins.builds__change_sets as cs on cs._dlt_id = i._dlt_parent_id
    inner join builds as b on b._dlt_id = cs._dlt_parent_id and b.recency = 1
    where i.commit_id is not null and i.commit_id <> ''
)
select
    'jenkins:build:' || job_full_name || '#' || cast(number as varchar) as build_id,
    job_full_name,
    number as build_number,
    commit_id as sha,
    kind as scm_kind,
    case when timestamp > 0 then to_timestamp(timestamp / 1000.0) end as committed_at,
    coalesce(person_id(author_email), person_id(author__full_name)) as author_id,
    msg as message
from items
where occurrence = 1
