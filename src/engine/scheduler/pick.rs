//! Picking the tokens of a decode: every stream that sampled gets its token from its own sampler
//! chain, or an argmax for plain greedy. A chain with logit bias, penalties or a grammar works on
//! the whole vocabulary (262,144 candidates built and sorted: up to a millisecond), so several
//! streams' picks run side by side on as many threads as decode (idle between decodes) instead
//! of one after another. The masks of constrained streams are computed ahead, during the decode
//! ([`Scheduler::decode_and_mask`]).

use super::Scheduler;
use crate::engine::constraint::Constraint;
use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::{argmax, Sampled, Sampler, Token};
use crate::engine::stack::DEEP_STACK;
use std::sync::Mutex;

/// What one stream's pick came to.
pub(super) enum Pick {
    Token(Token),
    /// The grammar must filter the whole vocabulary (the constraint thread's job).
    Deferred,
    Failed(Error),
}

/// One stream's pick to make: its chain (None: argmax), its constraint and its row of logits.
pub(super) struct Job<'a> {
    pub sampler: Option<&'a mut Sampler>,
    pub constraint: Option<&'a mut Constraint>,
    pub logits: &'a [f32],
}

impl Job<'_> {
    fn run(self) -> Pick {
        if self.logits.is_empty() {
            return Pick::Failed(Error::new(Status::Backend, "llama.cpp returned no logits"));
        }
        let picked: Result<Sampled> = match (self.sampler, self.constraint) {
            (Some(s), None) => s.sample(self.logits),
            (None, None) => Ok(Sampled::Token(argmax(self.logits))),
            // The constraint masks the logits; the token picked is its next one.
            (sampler, Some(c)) => {
                let token = match sampler {
                    Some(s) => c.masked(self.logits).and_then(|row| s.sample(row)),
                    None => c.argmax(self.logits).map(Sampled::Token),
                };
                match token {
                    Ok(Sampled::Token(t)) => c.consume(t).map(|_| Sampled::Token(t)),
                    other => other,
                }
            }
        };
        match picked {
            Ok(Sampled::Token(t)) => Pick::Token(t),
            Ok(Sampled::Deferred) => Pick::Deferred,
            Err(e) => Pick::Failed(e),
        }
    }
}

/// Makes every pick, in the order of `jobs`, on up to `threads` threads (this one included).
/// Side by side only when it pays for starting the helpers (tens of microseconds each, and the
/// decoding threads still spin on the CPUs for a while after a decode): two chains or more, or
/// eight argmaxes or more (about 20 µs each).
pub(super) fn pick_all(jobs: Vec<Job<'_>>, threads: usize) -> Vec<Pick> {
    let chains = jobs
        .iter()
        .filter(|j| j.sampler.is_some() || j.constraint.is_some())
        .count();
    let helpers = if chains >= 2 || jobs.len() >= 8 {
        threads.min(jobs.len()).saturating_sub(1)
    } else {
        0
    };
    if helpers == 0 {
        return jobs.into_iter().map(Job::run).collect();
    }
    let n = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results = Mutex::new((0..n).map(|_| None).collect::<Vec<Option<Pick>>>());
    let work = || loop {
        // Each job taken under the lock, run outside it.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some((i, job)) = next else { break };
        let pick = job.run();
        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(pick);
    };
    std::thread::scope(|s| {
        for _ in 0..helpers {
            // A constraint's parser may recurse along its grammar: the engine thread's stack.
            // Without a helper, this thread does the work.
            let _ = std::thread::Builder::new()
                .stack_size(DEEP_STACK)
                .spawn_scoped(s, work);
        }
        work();
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|p| {
            p.unwrap_or_else(|| {
                Pick::Failed(Error::new(
                    Status::Internal,
                    "internal error: a pick was lost",
                ))
            })
        })
        .collect()
}

impl Scheduler {
    /// Decodes the batch; meanwhile, on a thread of its own, the constrained streams that sample
    /// after this decode compute their masks (their last token is already consumed): on a GPU
    /// the mask costs the step nothing, on the CPU it takes a core from the decode for its time.
    pub(super) fn decode_and_mask(&mut self) -> Result<i32> {
        let Scheduler {
            ctx,
            batch,
            slots,
            profile,
            ..
        } = self;
        let mut constraints: Vec<&mut Constraint> = slots
            .iter_mut()
            .flatten()
            .filter(|a| a.out_row.is_some())
            .filter_map(|a| a.req.constraint.as_mut())
            .collect();
        if constraints.is_empty() {
            return ctx.decode(batch);
        }
        std::thread::scope(|s| {
            // Without a thread, each mask is computed at its pick instead.
            let masking = std::thread::Builder::new()
                .name("minerva-mask".into())
                .stack_size(DEEP_STACK)
                .spawn_scoped(s, || {
                    constraints
                        .iter_mut()
                        .map(|c| {
                            c.prepare();
                            c.last_mask
                        })
                        .collect::<Vec<_>>()
                });
            let rc = ctx.decode(batch);
            if let Ok(Ok(times)) = masking.map(|t| t.join()) {
                profile.record_masks(&times);
            }
            rc
        })
    }

    /// The picks of the streams sampling from `rows` (slot order): read from the graph for the
    /// streams sampled there, made on the host for the others, side by side where it pays.
    pub(super) fn pick(&mut self, rows: &[(usize, i32)]) -> Vec<Pick> {
        let Scheduler {
            ctx,
            slots,
            sample_threads,
            ..
        } = self;
        // A stream whose chain picked nothing (a device that cannot run one of its samplers)
        // is sampled on the host from now on.
        let backend: Vec<Option<Token>> = rows
            .iter()
            .map(|&(slot, row)| {
                let a = slots[slot].as_mut().expect("a stream that sampled");
                if !a.on_backend {
                    return None;
                }
                let t = ctx.sampled_token(row);
                if t.is_none() {
                    a.on_backend = false;
                    ctx.chain_failed(a.seq);
                }
                t
            })
            .collect();
        let host: Vec<(i32, i32)> = rows
            .iter()
            .zip(&backend)
            .filter(|(_, b)| b.is_none())
            .map(|(&(slot, row), _)| (row, slot as i32))
            .collect();
        let logits = ctx.logits_rows(&host);
        let mut wanted = rows
            .iter()
            .zip(&backend)
            .filter(|(_, b)| b.is_none())
            .map(|(&(slot, _), _)| slot)
            .peekable();
        let mut jobs = Vec::with_capacity(host.len());
        for (slot, a) in slots.iter_mut().enumerate() {
            if wanted.peek() != Some(&slot) {
                continue;
            }
            wanted.next();
            let a = a.as_mut().expect("a stream that sampled");
            jobs.push(Job {
                sampler: a.sampler.as_mut(),
                constraint: a.req.constraint.as_mut(),
                logits: logits[jobs.len()],
            });
        }
        let mut picked = pick_all(jobs, *sample_threads).into_iter();
        backend
            .into_iter()
            .map(|b| match b {
                Some(t) => Pick::Token(t),
                None => picked.next().unwrap_or_else(|| {
                    Pick::Failed(Error::new(
                        Status::Internal,
                        "internal error: a pick was lost",
                    ))
                }),
            })
            .collect()
    }
}
