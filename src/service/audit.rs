//! The audit trail's writer. Operations hand their record to `Auditor::record`, which only
//! queues it: a bounded channel drained by one background task that lets records gather for
//! `LINGER` and writes them in one store call. A send never waits for its record, and a full queue or a failing
//! store never fails it: the records are dropped, counted (`chat_audit_records_total`) and
//! logged instead.
//!
//! Where a request came from (transport, client address, request id) is set once per request
//! by the REST middleware or the socket handler (`with_origin`) and read here, so the
//! operations themselves only say who did what to which ids.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::auth::{Principal, PrincipalKind};
use crate::domain::audit::{ActorKind, AuditAction, AuditRecord, Transport};
use crate::domain::new_object_id;
use crate::domain::time::now;
use crate::metrics::{AuditOutcome, Metrics};
use crate::store::Store;

/// Records waiting to be written; past this they are dropped.
const QUEUE: usize = 50_000;
/// Most records written in one store call.
const BATCH: usize = 1_000;
/// How long the writer lets records gather after the first one arrives. The store's writes
/// are shared with sends (SQLite has one writer): a write per record would put a commit
/// between every two messages, one per interval costs them next to nothing.
const LINGER: Duration = Duration::from_millis(100);

/// Where the request being handled came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub transport: Transport,
    pub client_address: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// Work of the service itself (archiving), not a request.
    pub fn job() -> Self {
        Origin { transport: Transport::Job, client_address: None, request_id: None }
    }
}

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Runs `work` with `origin` as the origin of every record it makes.
pub fn with_origin<F: Future>(origin: Origin, work: F) -> impl Future<Output = F::Output> {
    ORIGIN.scope(origin, work)
}

fn current_origin() -> Origin {
    ORIGIN.try_with(Origin::clone).unwrap_or_else(|_| Origin::job())
}

enum Queued {
    Record(Box<AuditRecord>),
    /// Answered once everything queued before it is written (or dropped).
    Flush(oneshot::Sender<()>),
}

pub struct Auditor {
    /// `None`: `AUDIT=off`, nothing is recorded.
    queue: Option<mpsc::Sender<Queued>>,
    metrics: Arc<Metrics>,
    dropped: AtomicU64,
}

impl Auditor {
    /// Records nothing (`AUDIT=off`).
    pub fn off(metrics: Arc<Metrics>) -> Self {
        Auditor { queue: None, metrics, dropped: AtomicU64::new(0) }
    }

    /// Starts the background writer; it runs as long as the auditor exists.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, metrics.clone(), rx));
        Auditor { queue: Some(tx), metrics, dropped: AtomicU64::new(0) }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a record of `action` by `p` in `company`'s trail. Never waits.
    pub fn record(&self, p: &Principal, action: AuditAction, company: Option<&str>, on: On<'_>) {
        let (actor_kind, actor_id) = match &p.kind {
            PrincipalKind::User => (ActorKind::User, Some(p.user_id.clone())),
            PrincipalKind::Widget { .. } => (ActorKind::Widget, Some(p.user_id.clone())),
            PrincipalKind::Service => (ActorKind::Service, Some(p.user_id.clone())),
        };
        self.record_as(actor_kind, actor_id, action, company.or(p.company_id.as_deref()), on);
    }

    /// Queues a record whose actor is not a principal: an anonymous caller, a job.
    pub fn record_as(&self, actor_kind: ActorKind, actor_id: Option<String>, action: AuditAction, company: Option<&str>, on: On<'_>) {
        let Some(queue) = &self.queue else { return };
        let origin = current_origin();
        let record = AuditRecord {
            id: new_object_id(),
            at: now(),
            company_id: company.map(str::to_string),
            actor_kind,
            actor_id,
            action,
            conversation_id: on.conversation.map(str::to_string),
            subject_id: on.subject.map(str::to_string),
            detail: on.detail,
            client_address: origin.client_address,
            transport: origin.transport,
            request_id: origin.request_id,
        };
        tracing::debug!(
            target: "audit", action = action.as_str(), actor = record.actor_id.as_deref().unwrap_or("-"),
            conversation = record.conversation_id.as_deref().unwrap_or("-"), subject = record.subject_id.as_deref().unwrap_or("-"),
            "audit record"
        );
        if queue.try_send(Queued::Record(Box::new(record))).is_err() {
            self.metrics.audit_records(AuditOutcome::QueueFull, 1);
            // One line per thousand drops: a full queue means the store is far behind, and a
            // line per record would flood the log just when it matters.
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(1000) {
                tracing::warn!(action = action.as_str(), dropped_so_far = dropped + 1, "audit queue full: record dropped");
            }
        }
    }

    /// Waits until the records queued so far are written, at most `limit`: called on shutdown.
    pub async fn flush(&self, limit: Duration) {
        let Some(queue) = &self.queue else { return };
        let (tx, rx) = oneshot::channel();
        let started = Instant::now();
        if tokio::time::timeout(limit, queue.send(Queued::Flush(tx))).await.is_ok() {
            let _ = tokio::time::timeout(limit.saturating_sub(started.elapsed()), rx).await;
        }
    }
}

/// What a record is about, beside its action.
#[derive(Debug, Default, Clone)]
pub struct On<'a> {
    pub conversation: Option<&'a str>,
    /// The message, thread, attachment or participant acted on.
    pub subject: Option<&'a str>,
    pub detail: Option<String>,
}

impl<'a> On<'a> {
    pub fn conversation(id: &'a str) -> Self {
        On { conversation: Some(id), ..Default::default() }
    }

    pub fn subject(mut self, id: &'a str) -> Self {
        self.subject = Some(id);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The background writer: takes whatever has queued (up to `BATCH`) and writes it in one call.
async fn write_batches(store: Arc<dyn Store>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Queued>) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        if matches!(first, Queued::Record(_)) {
            tokio::time::sleep(LINGER).await;
        }
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Queued::Record(r) => batch.push(*r),
                Queued::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match store.insert_audit_records(&batch).await {
                Ok(()) => metrics.audit_records(AuditOutcome::Written, n),
                Err(e) => {
                    metrics.audit_records(AuditOutcome::StoreError, n);
                    tracing::warn!(error = %e, records = n, "audit records could not be written: dropped");
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
