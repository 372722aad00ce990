//! `raftcronctl jobs ...`: list, get, create, update, delete, pause, resume, trigger, runs.

use raftcron_client::{Consistency, JobEnvelope, JobList, ListQuery, OkResponse, ReadQuery, RunEnvelope};

use crate::args::{JobsCommand, Paging};
use crate::exit::{CliError, Context};
use crate::render::{note, paging_note};
use crate::spec::{create_request, update_request};
use crate::{views, Ctx};

fn consistency(stale: bool) -> Option<Consistency> {
    stale.then_some(Consistency::Stale)
}

pub fn list_query(p: Paging, stale: bool) -> ListQuery {
    ListQuery { page: p.page, page_size: p.page_size, consistency: consistency(stale) }
}

pub async fn run(ctx: &Ctx, cmd: JobsCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match cmd {
        JobsCommand::List { paging, all, stale } => {
            let mut list = if all {
                let jobs = c.list_all_jobs(consistency(stale)).await.context("listing jobs")?;
                let n = jobs.len();
                JobList { jobs, page: 1, page_size: n as u32, total_count: n as u64 }
            } else {
                c.list_jobs(&list_query(paging, stale)).await.context("listing jobs")?
            };
            list.jobs = list.jobs.into_iter().map(views::masked).collect();
            ctx.out.emit(&list, || views::jobs(&list.jobs))?;
            if ctx.out.is_table() {
                paging_note("jobs", list.page, list.page_size, list.jobs.len(), list.total_count);
            }
            Ok(())
        }
        JobsCommand::Get { id, stale } => {
            let job = c.get_job_with(id, &ReadQuery { consistency: consistency(stale) }).await;
            show(ctx, job.context(format!("reading job {id}"))?)
        }
        JobsCommand::Create(spec) => {
            let req = create_request(&spec, &mut std::io::stdin().lock())?;
            let job = c.create_job(&req).await.context("creating the job")?;
            if ctx.out.is_table() {
                note(&format!("created job {}", job.id));
            }
            show(ctx, job)
        }
        JobsCommand::Update { id, spec } => {
            let req = update_request(&spec, &mut std::io::stdin().lock())?;
            show(ctx, c.update_job(id, &req).await.context(format!("updating job {id}"))?)
        }
        JobsCommand::Pause { id } => {
            let job = c.set_job_active(id, false).await.context(format!("pausing job {id}"))?;
            if ctx.out.is_table() {
                note(&format!("paused job {id}"));
            }
            show(ctx, job)
        }
        JobsCommand::Resume { id } => {
            let job = c.set_job_active(id, true).await.context(format!("resuming job {id}"))?;
            if ctx.out.is_table() {
                note(&format!("resumed job {id}"));
            }
            show(ctx, job)
        }
        JobsCommand::Delete { id } => {
            c.delete_job(id).await.context(format!("deleting job {id}"))?;
            ctx.out.emit(&OkResponse { ok: true }, || format!("deleted job {id}"))
        }
        JobsCommand::Trigger { id } => {
            let run = c.trigger_job(id).await.context(format!("triggering job {id}"))?;
            if ctx.out.is_table() {
                note(&format!("triggered job {id}; follow it with `raftcronctl jobs runs {id}`"));
            }
            let env = RunEnvelope { run };
            ctx.out.emit(&env, || views::run(&env.run))
        }
        JobsCommand::Runs { id, paging, stale } => {
            let list =
                c.list_runs(id, &list_query(paging, stale)).await.context(format!("listing runs of job {id}"))?;
            ctx.out.emit(&list, || views::runs(&list.runs))?;
            if ctx.out.is_table() {
                paging_note("runs", list.page, list.page_size, list.runs.len(), list.total_count);
            }
            Ok(())
        }
    }
}

fn show(ctx: &Ctx, job: raftcron_client::Job) -> Result<(), CliError> {
    let env = JobEnvelope { job: views::masked(job) };
    ctx.out.emit(&env, || views::job(&env.job))
}
