/*
description: >-
  Jenkins folders, multibranch projects and buildable jobs, one row per job full name, with the
  job's Jenkins class reduced to a kind.
grain: one row per Jenkins item (folder, multibranch project or job)
primary_key: [job_full_name]
columns:
  job_full_name: Full name, the path of folder names and the job name joined by `/` (e.g. `ci/indexer/main`).
  job_name: The item's own name, the last part of the full name (`main`, `PR-7`, `gateway-deploy`).
  parent_full_name: Full name of the folder or multibranch project holding it; null at the top level.
  job_class: Jenkins' Java class of the item (`_class`), e.g. `org.jenkinsci.plugins.workflow.job.WorkflowJob`.
  kind: "`folder` (folders and organisation folders), `multibranch` (multibranch projects), `pipeline` (Pipeline jobs, including multibranch branch jobs), `freestyle`, or `other`."
  url: The item's URL on the Jenkins controller.
  color: Jenkins' status ball of the last build (`blue`, `red`, `yellow`, `aborted`, `notbuilt`; `_anime` while building); null for folders.
  description: The item's description as configured in Jenkins; null when none.
*/
with ranked as (
    select
        full_name,
        name,
        parent_full_name,
        _class,
        url,
        color,
        description,
        row_number() over (partition by full_name order by _dlt_load_id desc) as recency
    from raw_jenkins.jobs
)
select
    full_name as job_full_name,
    coalesce(name, regexp_extract(full_name, '[^/]+$')) as job_name,
    parent_full_name,
    _class as job_class,
    case
        when _class like '%MultiBranchProject' then 'multibranch'
        when _class like '%Folder' then 'folder'
        when _class = 'org.jenkinsci.plugins.workflow.job.WorkflowJob' then 'pipeline'
        when _class = 'hudson.model.FreeStyleProject' then 'freestyle'
        else 'other'
    end as kind,
    url,
    color,
    description
from ranked
where recency = 1
