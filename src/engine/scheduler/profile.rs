//! Where the engine thread's time goes, step by step: inside llama.cpp's decode, and minerva's own
//! host work around it (planning the batch, sampling, handing out text). Said in one log line
//! (info) when the engine ends; `scripts/bench.sh` prints it beside the benchmark's figures.
//!
//! Costs two clock readings per phase and step (tens of nanoseconds against steps of a
//! millisecond or more).

use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct Profile {
    steps: u64,
    generated: u64,
    /// Planning: cancelled streams, admission, building the batch.
    plan: Duration,
    /// Inside `llama_decode`.
    decode: Duration,
    /// Picking tokens: the stream's sampler, argmax, or reading a token sampled in the graph.
    sample: Duration,
    /// Accepting tokens: detokenizing, stop strings, tool-call capture, callbacks, wake-ups.
    deliver: Duration,
    /// Masks of constrained streams (computed while decoding): how many, their total time, the
    /// slowest.
    masks: u64,
    mask_total: Duration,
    mask_max: Duration,
}

/// The phases of one step.
pub(super) struct Step {
    start: Instant,
    decode_start: Option<Instant>,
    decode_end: Option<Instant>,
}

impl Step {
    pub fn start() -> Step {
        Step {
            start: Instant::now(),
            decode_start: None,
            decode_end: None,
        }
    }
    pub fn decoding(&mut self) {
        self.decode_start = Some(Instant::now());
    }
    pub fn decoded(&mut self) {
        self.decode_end = Some(Instant::now());
    }
}

impl Profile {
    /// Records a step that decoded: `sample` and `deliver` are the parts of its after-decode
    /// work, `generated` the tokens it produced.
    pub fn record(&mut self, step: Step, sample: Duration, deliver: Duration, generated: usize) {
        let (Some(d0), Some(d1)) = (step.decode_start, step.decode_end) else {
            return;
        };
        let end = Instant::now();
        self.steps += 1;
        self.generated += generated as u64;
        self.plan += d0 - step.start;
        self.decode += d1 - d0;
        self.sample += sample;
        self.deliver += deliver;
        // What is left of the step after decoding is sampling, delivering and bookkeeping.
        let after = end - d1;
        self.plan += after.saturating_sub(sample + deliver);
    }

    /// Records the masks computed during one decode.
    pub fn record_masks(&mut self, times: &[Duration]) {
        self.masks += times.len() as u64;
        for &t in times {
            self.mask_total += t;
            self.mask_max = self.mask_max.max(t);
        }
    }

    /// "engine thread: ..." with the time of an average step in each phase.
    pub fn summary(&self) -> Option<String> {
        if self.steps == 0 {
            return None;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e3 / self.steps as f64;
        let host = self.plan + self.sample + self.deliver;
        let masks = if self.masks > 0 {
            format!(
                "; {} constraint masks (during the decodes): mean {:.1} us, slowest {:.1} us",
                self.masks,
                self.mask_total.as_secs_f64() * 1e6 / self.masks as f64,
                self.mask_max.as_secs_f64() * 1e6
            )
        } else {
            String::new()
        };
        Some(format!(
            "engine thread: {} steps, {:.2} tokens generated a step; a step's time: llama_decode \
             {:.3} ms, minerva's host work {:.3} ms (planning {:.3}, sampling {:.3}, text and \
             callbacks {:.3}){masks}",
            self.steps,
            self.generated as f64 / self.steps as f64,
            per(self.decode),
            per(host),
            per(self.plan),
            per(self.sample),
            per(self.deliver),
        ))
    }
}
