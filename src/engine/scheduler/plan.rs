//! Pure decisions of the engine thread, unit-tested without a model: what goes into the next
//! batch, and where a new stream goes in the KV cache (the prompt cache).

use crate::engine::llama::Token;

/// What a sequence slot needs from the next batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Work {
    Idle,
    /// One token: the last one sampled.
    Generate,
    /// This many prompt tokens are still to be computed.
    Prompt(usize),
}

/// Decides what goes into one batch of at most `budget` tokens: every generating stream's token
/// first (one each keeps every stream moving), then prompt chunks, at most `prompt_budget` tokens
/// in all, to the oldest streams first (`order`: active slots, oldest first), so that a burst of
/// prompts gets its first tokens in turn rather than all at the end. Returns (slot, tokens) pairs
/// in slot order for generation, then in `order` for prompts.
pub(super) fn plan_batch(
    work: &[Work],
    budget: usize,
    prompt_budget: usize,
    order: &[usize],
) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut left = budget;
    for (slot, w) in work.iter().enumerate() {
        if *w == Work::Generate && left > 0 {
            plan.push((slot, 1));
            left -= 1;
        }
    }
    let mut left = left.min(prompt_budget);
    for &slot in order {
        if left == 0 {
            break;
        }
        if let Work::Prompt(rest) = work[slot] {
            let take = rest.min(left);
            if take > 0 {
                plan.push((slot, take));
                left -= take;
            }
        }
    }
    plan
}

/// Whether a stream generates that was admitted before every stream with prompt tokens pending
/// (`admitted`: the step of each slot's admission). Only such streams are held to the prompt
/// budget's time between tokens: streams started together (a burst) are not held back for each
/// other, their prompts fill whole batches, and they all generate in the same steps as soon as
/// possible.
pub(super) fn generating_before_prompts(work: &[Work], admitted: &[u64]) -> bool {
    let oldest_prompt = (0..work.len())
        .filter(|&i| matches!(work[i], Work::Prompt(_)))
        .map(|i| admitted[i])
        .min();
    oldest_prompt
        .is_some_and(|p| (0..work.len()).any(|i| work[i] == Work::Generate && admitted[i] < p))
}

/// A step that also generates may take this many times as long as a step of generation alone:
/// what bounds the time between a generating stream's tokens while prompts are computed.
const STEP_FACTOR: f64 = 2.5;
/// Prompt tokens a generating step takes at least, and before the first measurements.
const MIN_PROMPT_CHUNK: usize = 8;
const FIRST_PROMPT_CHUNK: usize = 32;
/// Weight of the newest measurement in the moving averages.
const ALPHA: f64 = 0.2;

/// The engine's pace, measured on this machine as it runs: how long a step of generation alone
/// takes, and how much each prompt token adds to a step. From them, the prompt budget of a step
/// that also generates: as many prompt tokens as keep it within [`STEP_FACTOR`] times a step of
/// generation alone.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// Seconds of a step with generation only, per generating stream and fixed part:
    /// step ~ gen_fixed + gen_per_stream * streams, fitted from the last steps.
    gen: Option<(f64, f64)>,
    /// Seconds a prompt token adds to a step.
    per_prompt_token: Option<f64>,
}

fn ema(slot: &mut Option<f64>, value: f64) {
    *slot = Some(match *slot {
        Some(old) => old + ALPHA * (value - old),
        None => value,
    });
}

impl Pace {
    /// A decoded step: `generated` streams' tokens and `prompt` prompt tokens took `took`.
    pub fn record(&mut self, generated: usize, prompt: usize, took: std::time::Duration) {
        let t = took.as_secs_f64();
        if !(t.is_finite() && t > 0.0) {
            return;
        }
        if prompt == 0 && generated > 0 {
            // Generation alone: split into a fixed part and a part per stream, assuming half
            // each at first and following how the time moves with the number of streams.
            let (fixed, per) = self.gen.unwrap_or((t / 2.0, t / 2.0 / generated as f64));
            let predicted = fixed + per * generated as f64;
            let scale = t / predicted;
            let (mut f, mut p) = (fixed, per);
            f += ALPHA * (fixed * scale - fixed);
            p += ALPHA * (per * scale - per);
            self.gen = Some((f, p));
        } else if prompt >= MIN_PROMPT_CHUNK {
            let base = if generated > 0 {
                self.gen_step(generated).unwrap_or(0.0)
            } else {
                0.0
            };
            ema(
                &mut self.per_prompt_token,
                (t - base).max(0.0) / prompt as f64,
            );
        }
    }

    fn gen_step(&self, generating: usize) -> Option<f64> {
        self.gen.map(|(f, p)| f + p * generating as f64)
    }

    /// Prompt tokens for a step in which `generating` streams also get a token; at most `cap`.
    pub fn prompt_budget(&self, generating: usize, cap: usize) -> usize {
        match (self.gen_step(generating), self.per_prompt_token) {
            (Some(g), Some(p)) if p > 0.0 => (((STEP_FACTOR - 1.0) * g / p) as usize)
                .max(MIN_PROMPT_CHUNK)
                .min(cap),
            _ => FIRST_PROMPT_CHUNK.min(cap),
        }
    }
}

/// Where a new stream goes, and which cached cells it starts from.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Placement {
    /// The free slot (sequence) the stream takes.
    pub slot: usize,
    /// The slot whose cells hold the reused prefix (`slot` itself when reused in place).
    pub source: Option<usize>,
    /// How many prompt tokens are reused: `kv[source][..reuse] == prompt[..reuse]`.
    pub reuse: usize,
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Chooses a free slot for a stream with `prompt`. With `cache`, the longest prefix of the prompt
/// that any `usable` slot's cells hold (cells computed with the stream's LoRA scales) (a running stream's or a finished one's) is reused, always leaving at
/// least one prompt token to compute (its logits give the first token). Without a reuse, the
/// stream takes an empty slot, else the one used least recently. None when every slot is busy.
pub(super) fn place(
    kv: &[Vec<Token>],
    busy: &[bool],
    last_used: &[u64],
    prompt: &[Token],
    cache: bool,
    usable: &[bool],
) -> Option<Placement> {
    let fresh = (0..kv.len())
        .filter(|&i| !busy[i])
        .min_by_key(|&i| (!kv[i].is_empty(), last_used[i]))?;
    let max_reuse = prompt.len().saturating_sub(1);
    let best = (0..kv.len())
        .filter(|&i| cache && usable[i])
        .map(|i| (common_prefix(&kv[i], prompt).min(max_reuse), !busy[i], i))
        .max();
    match best {
        Some((reuse, true, i)) if reuse > 0 => Some(Placement {
            slot: i,
            source: Some(i),
            reuse,
        }),
        Some((reuse, false, i)) if reuse > 0 => Some(Placement {
            slot: fresh,
            source: Some(i),
            reuse,
        }),
        _ => Some(Placement {
            slot: fresh,
            source: None,
            reuse: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_streams_older_than_the_prompts_hold_them_to_the_budget() {
        use Work::*;
        // A burst: four generate, four still have prompts, all admitted in step 1.
        let burst = [
            Generate,
            Generate,
            Generate,
            Generate,
            Prompt(128),
            Prompt(128),
        ];
        assert!(!generating_before_prompts(&burst, &[1; 6]));
        // A stream that was generating before the prompt came.
        assert!(generating_before_prompts(&[Generate, Prompt(100)], &[3, 9]));
        // No prompt pending, or nothing generating.
        assert!(!generating_before_prompts(&[Generate, Idle], &[1, 0]));
        assert!(!generating_before_prompts(&[Prompt(5), Idle], &[4, 0]));
        // The oldest pending prompt decides: one older generating stream is enough.
        assert!(generating_before_prompts(
            &[Generate, Generate, Prompt(10), Prompt(10)],
            &[5, 2, 5, 7]
        ));
    }

    /// Checks the promise of the prompt cache: reused cells hold exactly the prompt's tokens at the
    /// same positions, and at least one prompt token is left to compute.
    fn check(kv: &[Vec<i32>], busy: &[bool], prompt: &[i32], cache: bool) -> Placement {
        let p = place(
            kv,
            busy,
            &vec![0; kv.len()],
            prompt,
            cache,
            &vec![true; kv.len()],
        )
        .expect("a free slot");
        assert!(!busy[p.slot]);
        if let Some(src) = p.source {
            assert_eq!(kv[src][..p.reuse], prompt[..p.reuse]);
        } else {
            assert_eq!(p.reuse, 0);
        }
        assert!(p.reuse < prompt.len());
        p
    }

    #[test]
    fn reuses_a_finished_streams_prefix_in_place() {
        let kv = vec![vec![], vec![2, 10, 11, 12, 13, 50, 51]];
        let p = check(&kv, &[false, false], &[2, 10, 11, 12, 13, 14, 15], true);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: Some(1),
                reuse: 5
            }
        );
    }

    #[test]
    fn shares_a_running_streams_prefix() {
        let kv = vec![vec![2, 7, 8, 9, 60, 61], vec![2, 7]];
        let p = check(&kv, &[true, false], &[2, 7, 8, 9, 1, 1], true);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: Some(0),
                reuse: 4
            }
        );
    }

    #[test]
    fn identical_prompt_leaves_one_token_to_compute() {
        let kv = vec![vec![2, 3, 4, 5, 6, 7]];
        let p = check(&kv, &[false], &[2, 3, 4, 5], true);
        assert_eq!(p.reuse, 3);
    }

    #[test]
    fn cells_of_other_lora_scales_are_not_reused() {
        let kv = vec![vec![2, 3, 4, 5], vec![2, 3]];
        let p = place(
            &kv,
            &[false, false],
            &[0, 0],
            &[2, 3, 4, 5, 6],
            true,
            &[false, true],
        );
        assert_eq!(
            p.unwrap(),
            Placement {
                slot: 1,
                source: Some(1),
                reuse: 2
            }
        );
    }

    #[test]
    fn cache_off_takes_an_empty_slot_and_reuses_nothing() {
        let kv = vec![vec![2, 3, 4], vec![]];
        let p = check(&kv, &[false, false], &[2, 3, 4, 5], false);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: None,
                reuse: 0
            }
        );
    }

    #[test]
    fn without_a_match_the_least_recently_used_cache_goes() {
        let kv = vec![vec![2, 3], vec![2, 4]];
        let p = place(
            &kv,
            &[false, false],
            &[5, 1],
            &[9, 9, 9],
            true,
            &[true, true],
        )
        .unwrap();
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: None,
                reuse: 0
            }
        );
    }

    #[test]
    fn every_slot_busy() {
        assert!(place(
            &[vec![], vec![]],
            &[true, true],
            &[0, 0],
            &[1, 2],
            true,
            &[true, true]
        )
        .is_none());
    }

    #[test]
    fn generating_streams_get_one_token_each_first() {
        let work = [
            Work::Prompt(1000),
            Work::Generate,
            Work::Idle,
            Work::Generate,
        ];
        assert_eq!(
            plan_batch(&work, 8, 512, &[0, 1, 3]),
            vec![(1, 1), (3, 1), (0, 6)]
        );
    }

    #[test]
    fn long_prompt_is_chunked_by_the_budget() {
        let mut rest = 1300;
        let mut chunks = Vec::new();
        while rest > 0 {
            let plan = plan_batch(&[Work::Prompt(rest)], 512, 512, &[0]);
            assert_eq!(plan.len(), 1);
            chunks.push(plan[0].1);
            rest -= plan[0].1;
        }
        assert_eq!(chunks, vec![512, 512, 276]);
    }

    #[test]
    fn prompts_go_oldest_first() {
        let work = [Work::Prompt(1000), Work::Prompt(1000), Work::Prompt(10)];
        assert_eq!(plan_batch(&work, 100, 100, &[1, 0, 2]), vec![(1, 100)]);
        assert_eq!(
            plan_batch(&work, 100, 100, &[2, 0, 1]),
            vec![(2, 10), (0, 90)]
        );
    }

    #[test]
    fn the_prompt_budget_bounds_a_generating_step() {
        // A stream generating while another one's 10,000-token prompt is processed gets its token
        // into every batch, and the prompt only its budget.
        let work = [Work::Prompt(10_000), Work::Generate];
        assert_eq!(plan_batch(&work, 512, 40, &[0, 1]), vec![(1, 1), (0, 40)]);
        assert_eq!(plan_batch(&work, 30, 40, &[0, 1]), vec![(1, 1), (0, 29)]);
    }

    #[test]
    fn budget_smaller_than_generating_streams() {
        let work = [Work::Generate; 5];
        assert_eq!(
            plan_batch(&work, 3, 512, &[0, 1, 2, 3, 4]),
            vec![(0, 1), (1, 1), (2, 1)]
        );
    }

    #[test]
    fn the_pace_sets_the_prompt_budget() {
        use std::time::Duration;
        let mut pace = Pace::default();
        assert_eq!(pace.prompt_budget(1, 512), FIRST_PROMPT_CHUNK);
        // 20 ms a step of one stream, 2 ms a prompt token: 2.5x is 30 ms more, 15 tokens.
        for _ in 0..50 {
            pace.record(1, 0, Duration::from_millis(20));
            pace.record(1, 64, Duration::from_millis(20 + 128));
        }
        let b = pace.prompt_budget(1, 512);
        assert!((13..=17).contains(&b), "{b}");
        // More generating streams make a longer step, and room for more prompt.
        for _ in 0..50 {
            pace.record(4, 0, Duration::from_millis(50));
        }
        assert!(pace.prompt_budget(4, 512) > b);
        assert!(pace.prompt_budget(4, 16) <= 16);
        // A slow machine: never below the minimum.
        for _ in 0..50 {
            pace.record(1, 64, Duration::from_secs(10));
        }
        assert_eq!(pace.prompt_budget(1, 512), MIN_PROMPT_CHUNK);
    }

    #[test]
    fn nothing_to_do() {
        assert!(plan_batch(&[Work::Idle, Work::Idle], 512, 512, &[]).is_empty());
        assert!(plan_batch(&[], 512, 512, &[]).is_empty());
    }
}
