//! State machine tests: jobs with scripted bodies driven into every
//! reachable status, every verb applied, events checked in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qapi::types::*;
use qapi::{ErrorClass, QmpError};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use super::*;

/// What a test body does.
#[derive(Clone)]
enum Body {
    /// Returns at once.
    Finish(Result<(), JobError>),
    /// Waits (busy) until the notify fires, then returns `Ok`.
    Busy(Arc<Notify>),
    /// Idles until cancelled or completed; reports `ready` first if asked.
    Idle { ready: bool },
    /// Sleeps `n` times 20 ms, then returns `Ok`.
    Sleeps(u32),
}

struct TestDriver {
    body: Body,
    block: bool,
    completed: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestDriver {
    fn new(body: Body) -> TestDriver {
        TestDriver {
            body,
            block: false,
            completed: Arc::default(),
            log: Arc::default(),
        }
    }

    fn record(&self, s: &str) {
        self.log.lock().unwrap().push(s.to_string());
    }
}

impl JobDriver for TestDriver {
    fn job_type(&self) -> JobType {
        JobType::Mirror
    }

    fn run(&self, ctx: JobContext) -> JobFuture {
        let body = self.body.clone();
        let completed = self.completed.clone();
        Box::pin(async move {
            match body {
                Body::Finish(r) => r,
                Body::Busy(n) => {
                    n.notified().await;
                    Ok(())
                }
                Body::Idle { ready } => {
                    ctx.progress_set_remaining(10);
                    if ready {
                        ctx.progress_update(10);
                        ctx.transition_to_ready();
                    }
                    while !ctx.is_cancelled() && !completed.load(Ordering::SeqCst) {
                        ctx.yield_until_entered().await;
                    }
                    Ok(())
                }
                Body::Sleeps(n) => {
                    for _ in 0..n {
                        ctx.sleep(Duration::from_millis(20)).await;
                        ctx.progress_update(1);
                    }
                    Ok(())
                }
            }
        })
    }

    fn prepare(&self, _job: &Job) -> Option<Result<(), JobError>> {
        self.record("prepare");
        Some(Ok(()))
    }

    fn commit(&self, _job: &Job) {
        self.record("commit");
    }

    fn abort(&self, _job: &Job) {
        self.record("abort");
    }

    fn clean(&self, _job: &Job) {
        self.record("clean");
    }

    fn complete(&self, job: &Job) -> Option<Result<(), QmpError>> {
        self.record("complete");
        self.completed.store(true, Ordering::SeqCst);
        job.wake();
        Some(Ok(()))
    }

    fn notify(&self, _d: &Daemon, _job: &Job, what: Notification) {
        self.record(&format!("{what:?}"));
    }

    fn is_block_job(&self) -> bool {
        self.block
    }

    fn set_speed(&self, _job: &Job, _speed: i64) -> Result<(), QmpError> {
        Ok(())
    }
}

/// A daemon with an event subscription.
struct Fixture {
    d: Daemon,
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Fixture {
    fn new() -> Fixture {
        let d = Daemon::new();
        let (tx, rx) = mpsc::unbounded_channel();
        // Leaked on purpose: the subscription lives as long as the test.
        std::mem::forget(d.events.subscribe(tx));
        Fixture { d, rx }
    }

    /// Status changes since the last call, as "id:status".
    fn events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(v) = self.rx.try_recv() {
            if v["event"] == "JOB_STATUS_CHANGE" {
                out.push(format!(
                    "{}:{}",
                    v["data"]["id"].as_str().unwrap(),
                    v["data"]["status"].as_str().unwrap()
                ));
            }
        }
        out
    }

    /// Creates and starts a job as a command would.
    async fn start(&self, id: &str, driver: TestDriver, f: impl FnOnce(&mut JobOptions)) -> Job {
        let _g = self.d.command_lock.lock().await;
        let mut opts = JobOptions::new(id);
        f(&mut opts);
        let job = create(&self.d, Box::new(driver), opts).unwrap();
        start(&self.d, &job);
        run_pending(&self.d).await;
        job
    }

    /// Waits until the runner has brought `job` to `status`.
    async fn wait_status(&self, job: &Job, status: JobStatus) {
        for _ in 0..500 {
            if job.status() == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("job stuck in {:?}, wanted {status:?}", job.status());
    }

    async fn verb(&self, verb: JobVerb, id: &str) -> Result<(), QmpError> {
        let d = &self.d;
        let _g = d.command_lock.lock().await;
        let id = id.to_string();
        match verb {
            JobVerb::Cancel => qmp::job_cancel(d, JobCancelArgs { id }).await,
            JobVerb::Pause => qmp::job_pause(d, JobPauseArgs { id }).await,
            JobVerb::Resume => qmp::job_resume(d, JobResumeArgs { id }).await,
            JobVerb::SetSpeed => {
                let args = BlockJobSetSpeedArgs {
                    device: id,
                    speed: 1,
                };
                qmp::block_job_set_speed(d, args).await
            }
            JobVerb::Complete => qmp::job_complete(d, JobCompleteArgs { id }).await,
            JobVerb::Dismiss => qmp::job_dismiss(d, JobDismissArgs { id }).await,
            JobVerb::Finalize => qmp::job_finalize(d, JobFinalizeArgs { id }).await,
            JobVerb::Change => {
                let opts = BlockJobChangeOptions {
                    id,
                    u: BlockJobChangeOptionsBranch::Mirror(BlockJobChangeOptionsMirror {
                        copy_mode: MirrorCopyMode::Background,
                    }),
                };
                qmp::block_job_change(d, opts).await
            }
        }
    }
}

fn block(body: Body) -> TestDriver {
    TestDriver {
        block: true,
        ..TestDriver::new(body)
    }
}

/// Brings a fresh job "j" into `status` (a user pause for paused and
/// standby). Returns the fixture and the job.
async fn job_in(status: JobStatus) -> (Fixture, Job, Arc<Notify>) {
    let f = Fixture::new();
    let busy = Arc::new(Notify::new());
    let job = match status {
        JobStatus::Created => {
            let _g = f.d.command_lock.lock().await;
            create(
                &f.d,
                Box::new(block(Body::Idle { ready: false })),
                JobOptions::new("j"),
            )
            .unwrap()
        }
        JobStatus::Running => f.start("j", block(Body::Busy(busy.clone())), |_| {}).await,
        JobStatus::Paused | JobStatus::Standby => {
            let ready = status == JobStatus::Standby;
            let job = f.start("j", block(Body::Idle { ready }), |_| {}).await;
            f.verb(JobVerb::Pause, "j").await.unwrap();
            job
        }
        JobStatus::Ready => {
            f.start("j", block(Body::Idle { ready: true }), |_| {})
                .await
        }
        JobStatus::Waiting => {
            let txn = JobTxn::new();
            let other = Some(txn.clone());
            f.start("other", block(Body::Idle { ready: false }), |o| {
                o.txn = other
            })
            .await;
            f.start("j", block(Body::Finish(Ok(()))), |o| o.txn = Some(txn))
                .await
        }
        JobStatus::Pending => {
            f.start("j", block(Body::Finish(Ok(()))), |o| {
                o.auto_finalize = false
            })
            .await
        }
        JobStatus::Concluded => {
            f.start("j", block(Body::Finish(Ok(()))), |o| o.auto_dismiss = false)
                .await
        }
        s => panic!("{s:?} is not reachable by commands"),
    };
    assert_eq!(job.status(), status);
    (f, job, busy)
}

/// Every verb in every status a client can see, against QEMU's table and
/// the checks QEMU makes before it (resume: "not paused"; pause: "already
/// paused").
#[tokio::test]
async fn every_verb_in_every_status() {
    use JobStatus::*;
    for status in [
        Created, Running, Paused, Ready, Standby, Waiting, Pending, Concluded,
    ] {
        for verb in JobVerb::ALL {
            let (f, job, busy) = job_in(status).await;
            let user_paused = matches!(status, Paused | Standby);
            let expect = if *verb == JobVerb::Resume && !user_paused {
                Err("Can't resume a job that was not paused".to_string())
            } else if !table::verb_allowed(*verb, status) {
                Err(table::verb_refused("j", status, *verb))
            } else if *verb == JobVerb::Pause && user_paused {
                Err("Job is already paused".to_string())
            } else {
                Ok(())
            };
            let got = f.verb(*verb, "j").await.map_err(|e| e.desc);
            assert_eq!(got, expect, "{} in {}", verb.as_str(), status.as_str());
            // Let busy jobs end, so nothing is left behind.
            busy.notify_waiters();
            drop(job);
        }
    }
}

#[tokio::test]
async fn not_found() {
    let f = Fixture::new();
    for verb in [
        JobVerb::Cancel,
        JobVerb::Pause,
        JobVerb::Resume,
        JobVerb::Complete,
        JobVerb::Dismiss,
        JobVerb::Finalize,
    ] {
        let e = f.verb(verb, "nope").await.unwrap_err();
        assert_eq!(e, QmpError::generic("Job not found"));
    }
    // Jobs that are not block jobs are not found by block-job-*.
    f.start("j", TestDriver::new(Body::Idle { ready: false }), |_| {})
        .await;
    for verb in [JobVerb::SetSpeed, JobVerb::Change] {
        let e = f.verb(verb, "j").await.unwrap_err();
        assert_eq!(
            e,
            QmpError::new(ErrorClass::DeviceNotActive, "Block job 'j' not found")
        );
    }
    let _g = f.d.command_lock.lock().await;
    let args = BlockJobPauseArgs { device: "j".into() };
    let e = qmp::block_job_pause(&f.d, args).await.unwrap_err();
    assert_eq!(e.desc, "Block job 'j' not found");
}

#[tokio::test]
async fn id_rules() {
    let f = Fixture::new();
    let _g = f.d.command_lock.lock().await;
    let mk = |opts: JobOptions| {
        create(&f.d, Box::new(TestDriver::new(Body::Finish(Ok(())))), opts).map(|_| ())
    };
    for bad in ["", "1x", "a b", "é", "-a", "a@b"] {
        assert_eq!(
            mk(JobOptions::new(bad)).unwrap_err().desc,
            format!("Invalid job ID '{bad}'")
        );
    }
    mk(JobOptions::new("a-._Z9")).unwrap();
    assert_eq!(
        mk(JobOptions::new("a-._Z9")).unwrap_err().desc,
        "Job ID 'a-._Z9' already in use"
    );
    let internal = JobOptions {
        internal: true,
        ..JobOptions::new("x")
    };
    assert_eq!(
        mk(internal).unwrap_err().desc,
        "Cannot specify job ID for internal job"
    );
    let anonymous = JobOptions {
        id: None,
        ..JobOptions::new("x")
    };
    assert_eq!(
        mk(anonymous.clone()).unwrap_err().desc,
        "An explicit job ID is required"
    );
    mk(JobOptions {
        internal: true,
        ..anonymous
    })
    .unwrap();
    // Internal jobs are not listed and send no events.
    let ids: Vec<_> = qmp::query_jobs(&f.d)
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["a-._Z9"]);
}

#[tokio::test]
async fn success_and_failure_events() {
    let mut f = Fixture::new();
    let ok = TestDriver::new(Body::Finish(Ok(())));
    let log = ok.log.clone();
    f.start("a", ok, |_| {}).await;
    assert_eq!(
        f.events(),
        [
            "a:created",
            "a:running",
            "a:waiting",
            "a:pending",
            "a:concluded",
            "a:null"
        ]
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["prepare", "commit", "clean", "Completed"]
    );

    let bad = TestDriver::new(Body::Finish(Err(JobError::new("boom"))));
    let log = bad.log.clone();
    let job = f.start("b", bad, |o| o.auto_dismiss = false).await;
    assert_eq!(
        f.events(),
        ["b:created", "b:running", "b:aborting", "b:concluded"]
    );
    assert_eq!(*log.lock().unwrap(), ["abort", "clean", "Completed"]);
    let info = job.info();
    assert_eq!(info.error.as_deref(), Some("boom"));
    assert_eq!(info.status, JobStatus::Concluded);
    f.verb(JobVerb::Dismiss, "b").await.unwrap();
    assert_eq!(f.events(), ["b:null"]);
    assert!(f.d.jobs.get("b").is_none());
}

#[tokio::test]
async fn cancel_before_start_dismisses() {
    let (mut f, job, _) = job_in(JobStatus::Created).await;
    f.events();
    f.verb(JobVerb::Cancel, "j").await.unwrap();
    assert_eq!(f.events(), ["j:aborting", "j:concluded", "j:null"]);
    assert_eq!(job.error().as_deref(), Some(CANCELED));
}

#[tokio::test]
async fn pause_resume_and_complete() {
    let (mut f, job, _) = job_in(JobStatus::Ready).await;
    assert_eq!(f.events(), ["j:created", "j:running", "j:ready"]);
    f.verb(JobVerb::Pause, "j").await.unwrap();
    // The job is entered by the command: the event precedes its reply.
    assert_eq!(f.events(), ["j:standby"]);
    f.verb(JobVerb::Resume, "j").await.unwrap();
    assert_eq!(f.events(), ["j:ready"]);
    assert_eq!(
        f.verb(JobVerb::Resume, "j").await.unwrap_err().desc,
        "Can't resume a job that was not paused"
    );
    f.verb(JobVerb::Complete, "j").await.unwrap();
    assert_eq!(
        f.events(),
        ["j:waiting", "j:pending", "j:concluded", "j:null"]
    );
    assert_eq!(job.progress(), (10, 10));
}

#[tokio::test]
async fn manual_finalize() {
    let driver = TestDriver::new(Body::Finish(Ok(())));
    let log = driver.log.clone();
    let mut f = Fixture::new();
    let job = f
        .start("j", driver, |o| {
            o.auto_finalize = false;
            o.auto_dismiss = false;
        })
        .await;
    assert_eq!(
        f.events(),
        ["j:created", "j:running", "j:waiting", "j:pending"]
    );
    assert_eq!(*log.lock().unwrap(), ["Pending"]);
    f.verb(JobVerb::Finalize, "j").await.unwrap();
    assert_eq!(f.events(), ["j:concluded"]);
    assert_eq!(job.status(), JobStatus::Concluded);
    assert_eq!(
        *log.lock().unwrap(),
        ["Pending", "prepare", "commit", "clean", "Completed"]
    );
}

#[tokio::test]
async fn cancel_pending_aborts() {
    let (mut f, job, _) = job_in(JobStatus::Pending).await;
    f.events();
    f.verb(JobVerb::Cancel, "j").await.unwrap();
    assert_eq!(f.events(), ["j:aborting", "j:concluded", "j:null"]);
    assert_eq!(job.error().as_deref(), Some(CANCELED));
}

#[tokio::test]
async fn cancel_busy_job_ends_after_reply() {
    let (mut f, job, busy) = job_in(JobStatus::Running).await;
    f.events();
    f.verb(JobVerb::Pause, "j").await.unwrap();
    f.verb(JobVerb::Cancel, "j").await.unwrap();
    // Busy: nothing happens until its wait ends; the client pause is gone.
    assert!(f.events().is_empty());
    assert!(!job.user_paused());
    busy.notify_waiters();
    f.wait_status(&job, JobStatus::Null).await;
    assert_eq!(f.events(), ["j:aborting", "j:concluded", "j:null"]);
}

#[tokio::test]
async fn transaction_success_and_abort() {
    let mut f = Fixture::new();
    let txn = JobTxn::new();
    let busy = Arc::new(Notify::new());
    let t = Some(txn.clone());
    let a = f
        .start("a", TestDriver::new(Body::Busy(busy.clone())), |o| {
            o.txn = t
        })
        .await;
    let t = Some(txn.clone());
    f.start("b", TestDriver::new(Body::Finish(Ok(()))), |o| o.txn = t)
        .await;
    assert_eq!(
        f.events(),
        [
            "a:created",
            "a:running",
            "b:created",
            "b:running",
            "b:waiting"
        ]
    );
    busy.notify_waiters();
    f.wait_status(&a, JobStatus::Null).await;
    assert_eq!(
        f.events(),
        [
            "a:waiting",
            "b:pending",
            "a:pending",
            "b:concluded",
            "b:null",
            "a:concluded",
            "a:null"
        ]
    );

    // One job fails: the other is cancelled, both conclude as aborted.
    let txn = JobTxn::new();
    let t = Some(txn.clone());
    let c = f
        .start("c", TestDriver::new(Body::Idle { ready: false }), |o| {
            o.txn = t
        })
        .await;
    let t = Some(txn.clone());
    let fail = TestDriver::new(Body::Finish(Err(JobError::new("boom"))));
    f.start("d", fail, |o| o.txn = t).await;
    assert_eq!(
        f.events(),
        [
            "c:created",
            "c:running",
            "d:created",
            "d:running",
            "d:aborting",
            "d:concluded",
            "d:null",
            "c:aborting",
            "c:concluded",
            "c:null"
        ]
    );
    assert_eq!(c.error().as_deref(), Some(CANCELED));
}

#[tokio::test]
async fn sleeping_job_pauses_at_once() {
    let mut f = Fixture::new();
    let job = f.start("s", TestDriver::new(Body::Sleeps(5)), |_| {}).await;
    f.verb(JobVerb::Pause, "s").await.unwrap();
    assert_eq!(f.events(), ["s:created", "s:running", "s:paused"]);
    let before = job.progress().0;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(job.progress().0, before, "a paused job makes no progress");
    f.verb(JobVerb::Resume, "s").await.unwrap();
    assert_eq!(f.events(), ["s:running"]);
    f.wait_status(&job, JobStatus::Null).await;
    assert_eq!(job.progress().0, 5);
}

#[tokio::test]
async fn block_job_cancel_of_paused_job() {
    let (f, _job, _) = job_in(JobStatus::Paused).await;
    let _g = f.d.command_lock.lock().await;
    let args = BlockJobCancelArgs {
        device: "j".into(),
        force: None,
    };
    let e = qmp::block_job_cancel(&f.d, args).await.unwrap_err();
    assert_eq!(e.desc, "The block job for device 'j' is currently paused");
    let args = BlockJobCancelArgs {
        device: "j".into(),
        force: Some(true),
    };
    qmp::block_job_cancel(&f.d, args).await.unwrap();
}

#[tokio::test]
async fn cancel_sync_all_clears_everything() {
    let mut f = Fixture::new();
    f.start("a", TestDriver::new(Body::Idle { ready: false }), |_| {})
        .await;
    f.start("b", TestDriver::new(Body::Finish(Ok(()))), |o| {
        o.auto_dismiss = false
    })
    .await;
    f.events();
    shutdown(&f.d).await;
    assert_eq!(
        f.events(),
        ["b:null", "a:aborting", "a:concluded", "a:null"]
    );
    assert!(f.d.jobs.list().is_empty());
}

#[tokio::test]
async fn cancel_of_paused_job_resumes_it_first() {
    let (mut f, job, _) = job_in(JobStatus::Standby).await;
    f.events();
    f.verb(JobVerb::Cancel, "j").await.unwrap();
    // Back to ready at its pause point, then the body sees the cancellation.
    assert_eq!(
        f.events(),
        ["j:ready", "j:aborting", "j:concluded", "j:null"]
    );
    assert_eq!(job.error().as_deref(), Some(CANCELED));
}
