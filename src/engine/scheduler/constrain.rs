//! Constraint work off the engine thread.
//!
//! A grammar checks the chain's pick, then its best candidates, on the engine thread (see
//! `Sampler::sample`): microseconds. When neither settles the token, the grammar must filter the
//! whole vocabulary, which for a grammar of many alternatives (a JSON enum of 3,000 values) takes
//! seconds. That is done here, on one worker thread per engine, with a copy of the stream's
//! logits: the stream sits out of the batches meanwhile, and every other stream of the engine goes
//! on. The work stops between slices of the vocabulary when the stream is cancelled or the engine
//! shuts down, so neither waits for it.

use super::request::{Mailbox, Sampled};
use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::{Sampler, Token};
use crate::engine::stack::DEEP_STACK;
use crate::engine::stream::StreamShared;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A stream's deferred sampling.
pub(crate) struct Job {
    pub slot: usize,
    pub shared: Arc<StreamShared>,
    pub sampler: Sampler,
    pub logits: Vec<f32>,
}

/// The engine's worker, started at its first job.
pub(super) struct Constrainer {
    mailbox: Arc<Mailbox>,
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Constrainer {
    pub fn new(mailbox: Arc<Mailbox>) -> Constrainer {
        Constrainer {
            mailbox,
            jobs: None,
            thread: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues `job`; its outcome arrives in `Incoming::sampled`, and the engine thread is woken.
    /// When no worker can be started the job fails at once the same way.
    pub fn submit(&mut self, job: Job) {
        if self.jobs.is_none() {
            let (tx, rx) = channel::<Job>();
            let mailbox = self.mailbox.clone();
            let stop = self.stop.clone();
            let spawned = std::thread::Builder::new()
                .name("minerva-constrain".into())
                .stack_size(DEEP_STACK)
                .spawn(move || {
                    for job in rx {
                        let out = run(job, &stop);
                        mailbox.incoming.lock().sampled.push_back(out);
                        mailbox.wake.notify_all();
                    }
                });
            match spawned {
                Ok(t) => {
                    self.jobs = Some(tx);
                    self.thread = Some(t);
                }
                Err(e) => {
                    let err = Error::new(
                        Status::OutOfMemory,
                        format!("cannot start the constraint thread: {e}"),
                    );
                    return self.hand_back(job, Err(err));
                }
            }
        }
        if let Err(e) = self.jobs.as_ref().expect("started").send(job) {
            let err = Error::new(
                Status::Internal,
                "internal error: the constraint thread ended",
            );
            self.hand_back(e.0, Err(err));
        }
    }

    fn hand_back(&self, job: Job, token: Result<Option<Token>>) {
        self.mailbox.incoming.lock().sampled.push_back(Sampled {
            slot: job.slot,
            shared: job.shared,
            sampler: job.sampler,
            token,
        });
    }

    /// Stops the work under way and waits for the worker to end (a slice of the vocabulary at
    /// most). Its samplers are then in `Incoming::sampled`.
    pub fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Constrainer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn run(mut job: Job, stop: &AtomicBool) -> Sampled {
    let shared = job.shared.clone();
    let stopped = || stop.load(Ordering::Relaxed) || shared.is_cancelled();
    let token = if stopped() {
        Ok(None)
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.sampler.sample_full(&job.logits, &stopped)
        }))
        .unwrap_or_else(|_| {
            Err(Error::new(
                Status::Internal,
                "internal error: a panic while applying the grammar",
            ))
        })
    };
    Sampled {
        slot: job.slot,
        shared: job.shared,
        sampler: job.sampler,
        token,
    }
}
