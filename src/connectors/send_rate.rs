//! One send rate per target mailbox, shared by every lane, connection and step that writes to
//! it. Exchange Online throttles per mailbox (`NO Request is throttled. Suggested Backoff
//! Time: N milliseconds`, often followed by a disconnect): there the throttle budget, not the
//! copier's speed, decides how long a migration takes, and every refused command makes the
//! next backoff longer. So the senders of one mailbox act as one:
//!
//! * **A throttling reply pauses all of them** for the suggested time (else a doubling
//!   backoff), instead of each lane waiting on its own and then sending its next burst into
//!   the same empty bucket.
//! * **The rate finds the budget.** Nothing is paced until the first throttle (a server that
//!   never throttles sees full speed). Throttling budgets are token buckets, and two throttles
//!   measure one: the first, after an unpaced burst, shows the bucket's depth (what the
//!   mailbox took at once); pacing then starts there and doubles every half second (slow
//!   start) until the second throttle, whose timing gives the refill rate — a bucket that
//!   was full when the rate went up empties in `depth ÷ (rate − budget)` seconds. From there
//!   the rate sits just under that budget, grows additively while everything is taken and
//!   shrinks multiplicatively on a later throttle (AIMD). Bursts (APPENDs in flight) are what
//!   a quarter second of the rate allows, bounding what one throttle can refuse. Once the
//!   bucket is measured, what it refills during a pause (up to its depth) goes when the pause
//!   ends, as the first burst did, instead of being given away.
//! * **A known budget** (`max_messages_per_second` in the plan, like imapsync's
//!   `--maxmessagespersecond`) starts there and is never exceeded. It is trusted: a throttle
//!   then pauses the senders but does not lower the rate (the mailbox's other clients spent
//!   the budget for a moment; the plan knows what it allows).
//! * **One decrease per pause.** The answers to commands already in flight when a throttle
//!   paused the senders are throttled too; like TCP's one reduction per round trip, they are
//!   echoes of that one event, not reasons to slow down again.
//!
//! Time spent paused is counted per mailbox, for `status` and the report.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// APPENDs in flight at most once pacing started.
const MAX_DEPTH: usize = 16;
/// A paced burst is what the rate allows in this share of a second: a budget's bucket takes
/// a burst of about that.
const BURST_SECONDS: f64 = 0.25;
/// Slow start doubles the rate this often while the mailbox takes everything.
const DOUBLING: Duration = Duration::from_millis(500);
/// The share of the measured budget sent once it is known.
const BELOW_BUDGET: f64 = 0.95;
/// Multiplicative decrease on a throttle once the budget was measured.
const DECREASE: f64 = 0.85;
/// Additive increase per second without a throttle, as a share of the rate.
const INCREASE: f64 = 0.01;
/// Backoff when a throttling reply suggests no wait: doubled per consecutive throttle.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A suggested wait longer than this is cut to it (Exchange has suggested five minutes).
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// The burst (and APPENDs in flight) a paced `rate` allows.
fn burst(rate: f64) -> usize {
    ((rate * BURST_SECONDS).ceil() as usize).clamp(1, MAX_DEPTH)
}

/// Where the controller is in finding the budget.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not paced: no throttle yet. Counts what the mailbox took.
    Unpaced { accepted: usize },
    /// Doubling the rate; `rates` says from when each rate held (the first from the end of
    /// the first pause, when the bucket was full again).
    SlowStart {
        rates: Vec<(Instant, f64)>,
        /// The bucket's depth, as the first throttle showed it.
        depth: f64,
    },
    /// Just under the measured (or configured) budget.
    Steady,
}

/// The refill rate of a token bucket `depth` deep, full when `rates` began, that emptied at
/// `emptied` while drawn at those rates: the one rate at which a bucket simulated so empties
/// then (a higher refill empties it later). Found by bisection.
fn refill_rate(depth: f64, rates: &[(Instant, f64)], emptied: Instant) -> f64 {
    let Some(&(start, _)) = rates.first() else {
        return 0.5;
    };
    let top = rates.iter().map(|(_, r)| *r).fold(0.5, f64::max);
    let empties_by = |refill: f64| -> Option<f64> {
        let mut level = depth;
        for (i, &(from, rate)) in rates.iter().enumerate() {
            let to = rates.get(i + 1).map_or(emptied, |(t, _)| *t).max(from);
            let span = to.duration_since(from).as_secs_f64();
            let drain = rate - refill;
            if drain > 0.0 && level <= drain * span {
                return Some(from.duration_since(start).as_secs_f64() + level / drain);
            }
            level = (level - drain * span).min(depth);
        }
        None
    };
    let observed = emptied.duration_since(start).as_secs_f64();
    let (mut lo, mut hi) = (0.5_f64.min(top), top);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        match empties_by(mid) {
            // Emptied too soon: the bucket refills faster than `mid`.
            Some(t) if t < observed => lo = mid,
            _ => hi = mid,
        }
    }
    (lo + hi) / 2.0
}

/// See the module documentation.
#[derive(Debug)]
pub struct SendRate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The plan's known budget, messages per second.
    configured: Option<f64>,
    phase: Phase,
    /// Messages per second allowed now; `None` while unpaced.
    rate: Option<f64>,
    /// Pacing tokens (messages that may go now) and when they were last topped up.
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    backoff: Duration,
    /// When the rate last grew or shrank.
    adjusted: Instant,
    throttled: Duration,
    refusals: u64,
    /// When the mailbox last throttled.
    last_throttle: Option<Instant>,
    /// The depth of the mailbox's bucket, once two throttles measured it.
    bucket: Option<f64>,
}

/// Live controllers by mailbox key. Weak, so a finished walk forgets them.
static LIVE: Mutex<Vec<(String, Weak<SendRate>)>> = Mutex::new(Vec::new());

impl SendRate {
    /// The controller of the mailbox `key` (server and login), shared with every other caller
    /// while one is alive. `configured`: the plan's known budget in messages per second.
    pub fn for_mailbox(key: &str, configured: Option<f64>) -> Arc<SendRate> {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(_, w)| w.strong_count() > 0);
        if let Some(found) = live
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return found;
        }
        let rate = Arc::new(SendRate::new(configured));
        live.push((key.to_owned(), Arc::downgrade(&rate)));
        rate
    }

    /// A controller of its own (tests, and targets that do not share one).
    pub fn new(configured: Option<f64>) -> SendRate {
        let configured = configured.filter(|r| r.is_finite() && *r > 0.0);
        let now = Instant::now();
        SendRate {
            state: Mutex::new(State {
                configured,
                phase: match configured {
                    Some(_) => Phase::Steady,
                    None => Phase::Unpaced { accepted: 0 },
                },
                rate: configured,
                tokens: configured.map_or(0.0, |r| burst(r) as f64),
                refilled: now,
                paused_until: None,
                backoff: FIRST_BACKOFF,
                adjusted: now,
                throttled: Duration::ZERO,
                refusals: 0,
                last_throttle: None,
                bucket: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many of `wanted` messages may be sent now, waiting (cancellably, by dropping the
    /// future) for a pause to end and for pacing. Always at least one when `wanted > 0`.
    pub async fn acquire(&self, wanted: usize) -> usize {
        if wanted == 0 {
            return 0;
        }
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        s.paused_until = None;
                        let Some(rate) = s.rate else {
                            return wanted;
                        };
                        let depth = burst(rate);
                        s.refill(now, rate, depth);
                        if s.tokens >= 1.0 {
                            let n = (s.tokens.floor() as usize).min(wanted).min(depth);
                            s.tokens -= n as f64;
                            return n;
                        }
                        Duration::from_secs_f64((1.0 - s.tokens) / rate)
                    }
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// `n` messages were acknowledged: the mailbox takes this rate; grow towards more.
    pub fn accepted(&self, n: usize) {
        let mut s = self.lock();
        let now = Instant::now();
        s.backoff = FIRST_BACKOFF;
        let cap = s.configured.unwrap_or(f64::INFINITY);
        let rate = s.rate;
        match (&mut s.phase, rate) {
            (Phase::Unpaced { accepted }, _) => *accepted += n,
            // Acknowledged during the first pause: part of the unpaced burst the mailbox took
            // (its answers came after the throttle's), so the bucket is that much deeper.
            (Phase::SlowStart { rates, depth }, Some(_))
                if rates.len() == 1 && rates.first().is_some_and(|(from, _)| now < *from) =>
            {
                *depth += n as f64;
                let start = depth.max(1.0).min(cap);
                rates[0].1 = start;
                s.rate = Some(start);
            }
            (Phase::SlowStart { rates, .. }, Some(rate))
                if rates
                    .last()
                    .is_some_and(|(since, _)| now >= *since + DOUBLING) =>
            {
                let doubled = (rate * 2.0).min(cap);
                rates.push((now, doubled));
                s.rate = Some(doubled);
            }
            (Phase::Steady, Some(rate)) => {
                let since = now.saturating_duration_since(s.adjusted).as_secs_f64();
                if since >= 1.0 {
                    s.rate = Some((rate * (1.0 + INCREASE * since)).min(cap));
                    s.adjusted = now;
                }
            }
            _ => {}
        }
    }

    /// The mailbox refused `refused` messages with a throttling reply suggesting `wait`:
    /// pause every sender, and from now on send more slowly.
    pub fn throttled(&self, refused: usize, wait: Option<Duration>) {
        let mut s = self.lock();
        let now = Instant::now();
        s.refusals += refused as u64;
        s.last_throttle = Some(now);
        let pause = match wait {
            Some(w) => w.min(MAX_PAUSE),
            None => {
                let b = s.backoff;
                s.backoff = (b * 2).min(MAX_BACKOFF);
                b
            }
        };
        let until = now + pause;
        // Pauses of several lanes overlap: count wall time once.
        let counted_from = match s.paused_until {
            Some(p) if p > now => p,
            _ => now,
        };
        if until > counted_from {
            s.throttled += until - counted_from;
        }
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        let cap = s.configured.unwrap_or(f64::INFINITY);
        let measured_depth = match &s.phase {
            Phase::SlowStart { depth, .. } => Some(*depth),
            _ => None,
        };
        let (rate, phase) = match (&s.phase, s.rate) {
            // Another answer to the unpaced burst (other lanes' commands were in flight when
            // the first throttle came): still the first throttle, the pause grows.
            (Phase::SlowStart { rates, depth }, Some(rate))
                if rates.len() == 1 && rates.first().is_some_and(|(from, _)| now < *from) =>
            {
                let (from, start) = rates[0];
                (
                    rate,
                    Phase::SlowStart {
                        rates: vec![(from.max(until), start)],
                        depth: *depth,
                    },
                )
            }
            // The unpaced burst the mailbox took is its bucket's depth: start there.
            (Phase::Unpaced { accepted }, _) => {
                let depth = *accepted as f64;
                let start = depth.max(1.0);
                (
                    start,
                    Phase::SlowStart {
                        rates: vec![(until, start)],
                        depth,
                    },
                )
            }
            // The bucket, full when slow start began, emptied now: its refill rate is the
            // budget.
            (Phase::SlowStart { rates, depth }, Some(_)) => {
                let budget = refill_rate(*depth, rates, now);
                ((budget * BELOW_BUDGET).max(0.5), Phase::Steady)
            }
            // A known budget is trusted: pause, keep the rate.
            (Phase::Steady, Some(rate)) if s.configured.is_some() => (rate, Phase::Steady),
            // One decrease per pause: throttles arriving while the senders wait (answers to
            // commands already in flight) are echoes of the one that paused them.
            (Phase::Steady, Some(rate)) if now < s.adjusted => (rate, Phase::Steady),
            (_, rate) => ((rate.unwrap_or(1.0) * DECREASE).max(0.5), Phase::Steady),
        };
        let decreased = s.rate != Some(rate.min(cap)) || s.phase != phase;
        if phase == Phase::Steady && s.bucket.is_none() && s.configured.is_none() {
            s.bucket = measured_depth;
        }
        s.rate = Some(rate.min(cap));
        s.phase = phase;
        // The mailbox's bucket refills while every sender waits: once its depth and refill
        // are measured, what it will hold when the pause ends may go at once, as it did in
        // the first burst (not more than it holds, and not more than the pause refills).
        // Only for the throttle that decided this pause: the echoes of one event (other
        // lanes' commands in flight, the first answers after it) must not hand it out again.
        let paused = s.paused_until.map_or(0.0, |p| (p - now).as_secs_f64());
        s.tokens = match (s.bucket, &s.phase) {
            (Some(depth), Phase::Steady) if decreased => depth.min(rate.min(cap) * paused),
            _ => 0.0,
        };
        s.refilled = until;
        if decreased {
            s.adjusted = until;
        }
    }

    /// Wall time the mailbox's senders spent paused by throttling so far.
    pub fn throttled_time(&self) -> Duration {
        self.lock().throttled
    }

    /// Whether the mailbox throttled within `within`: a connection lost now was likely
    /// closed for it.
    pub fn throttled_within(&self, within: Duration) -> bool {
        self.lock()
            .last_throttle
            .is_some_and(|t| t.elapsed() < within)
    }

    /// Messages refused by throttling so far.
    pub fn refusals(&self) -> u64 {
        self.lock().refusals
    }
}

impl State {
    /// Tops the pacing tokens up to a burst's worth; a larger credit (the bucket refilled
    /// during a pause) is spent first, not cut.
    fn refill(&mut self, now: Instant, rate: f64, depth: usize) {
        if now > self.refilled {
            let add = now.duration_since(self.refilled).as_secs_f64() * rate;
            let burst = depth.max(1) as f64;
            if self.tokens < burst {
                self.tokens = (self.tokens + add).min(burst);
            }
            self.refilled = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unthrottled_mailboxes_are_not_paced() {
        let r = SendRate::new(None);
        assert_eq!(r.acquire(64).await, 64);
        r.accepted(64);
        assert_eq!(r.acquire(64).await, 64);
    }

    #[tokio::test]
    async fn a_known_budget_paces_from_the_start() {
        let r = SendRate::new(Some(4.0));
        // A burst of what a quarter of a second allows, then paced.
        let first = r.acquire(64).await;
        assert_eq!(first, 1, "{first}");
        let second = r.acquire(64).await;
        assert!(second >= 1);
    }

    #[tokio::test]
    async fn a_throttle_pauses_every_sender_and_starts_pacing() {
        let r = Arc::new(SendRate::new(None));
        r.accepted(10);
        let at = Instant::now();
        r.throttled(6, Some(Duration::from_millis(80)));
        let until = r.lock().paused_until.expect("paused");
        assert!(
            until >= at + Duration::from_millis(80),
            "for the suggested time"
        );
        let n = r.acquire(64).await;
        assert!(
            Instant::now() >= until,
            "nothing goes before the pause ends"
        );
        assert!((1..=burst(10.0)).contains(&n), "{n}");
        assert_eq!(r.refusals(), 6);
        assert!(r.throttled_time() >= Duration::from_millis(80));
        // Overlapping pauses of two lanes count once.
        let before = r.throttled_time();
        r.throttled(1, Some(Duration::from_millis(50)));
        r.throttled(1, Some(Duration::from_millis(50)));
        let added = r.throttled_time() - before;
        assert!(added <= Duration::from_millis(60), "{added:?}");
    }

    #[test]
    fn two_throttles_measure_a_token_bucket() {
        let r = SendRate::new(None);
        // An unpaced burst of 10 taken, then refused: a bucket 10 deep.
        r.accepted(10);
        r.throttled(6, Some(Duration::ZERO));
        // Slow start: 10/s, 20/s, then 40/s: a 10-deep bucket refilling at 20/s stays full
        // until 40/s, which empties it in 0.5 s — also when the rate doubled again first.
        let t0 = Instant::now() - Duration::from_millis(1600);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let rates = vec![
            (ms(0), 10.0),
            (ms(500), 20.0),
            (ms(1000), 40.0),
            (ms(1500), 80.0),
        ];
        let b = refill_rate(10.0, &rates[..3], ms(1500));
        assert!((b - 20.0).abs() < 0.1, "{b}");
        // Doubled to 80/s at 1.5 s, throttled soon after: drawn at 40 then 80 from full.
        let b = refill_rate(10.0, &rates, ms(1500) + Duration::from_millis(1));
        assert!((b - 20.0).abs() < 1.0, "{b}");
        {
            let mut s = r.lock();
            s.rate = Some(40.0);
            s.phase = Phase::SlowStart {
                rates: rates[..3].to_vec(),
                depth: 10.0,
            };
        }
        let _ = refill_rate(10.0, &rates, Instant::now());
        r.throttled(1, Some(Duration::ZERO));
        assert_eq!(r.lock().phase, Phase::Steady);
    }

    #[test]
    fn the_whole_first_burst_measures_the_depth() {
        // Three lanes' bursts in flight: one throttled answer comes before the others'
        // acknowledgements and throttles.
        let r = SendRate::new(None);
        r.throttled(3, Some(Duration::from_secs(5)));
        r.accepted(5);
        r.throttled(2, Some(Duration::from_secs(5)));
        r.accepted(3);
        let s = r.lock();
        match &s.phase {
            Phase::SlowStart { rates, depth } => {
                assert_eq!((*depth, rates.len()), (8.0, 1), "{:?}", s.phase);
                assert_eq!(rates[0].1, 8.0);
            }
            other => panic!("still finding the bucket: {other:?}"),
        }
        assert_eq!(s.rate, Some(8.0));
    }

    #[test]
    fn a_measured_bucket_refilled_during_a_pause_may_go_at_once() {
        let r = SendRate::new(None);
        r.accepted(10);
        r.throttled(1, Some(Duration::ZERO));
        {
            // Slow start ran at 10/s, then 20/s, then 40/s, which emptied it.
            let t0 = Instant::now() - Duration::from_millis(1500);
            let mut s = r.lock();
            s.rate = Some(40.0);
            s.phase = Phase::SlowStart {
                rates: vec![
                    (t0, 10.0),
                    (t0 + Duration::from_millis(500), 20.0),
                    (t0 + Duration::from_millis(1000), 40.0),
                ],
                depth: 10.0,
            };
        }
        // A second's pause refills a 10-deep bucket at ~20/s: full again.
        r.throttled(1, Some(Duration::from_secs(1)));
        let s = r.lock();
        assert_eq!((s.bucket, &s.phase), (Some(10.0), &Phase::Steady));
        assert!((s.tokens - 10.0).abs() < 1e-9, "{}", s.tokens);
        drop(s);
        // Later (that pause over), a short pause refills only what the rate gives in it.
        {
            let mut s = r.lock();
            s.adjusted -= Duration::from_secs(2);
            s.paused_until = None;
        }
        r.throttled(1, Some(Duration::from_millis(100)));
        let s = r.lock();
        let expected = s.rate.unwrap() * 0.1;
        assert!(
            (s.tokens - expected).abs() < 0.05,
            "{} vs {expected}",
            s.tokens
        );
    }

    #[test]
    fn a_known_budget_is_kept_through_throttles() {
        let r = SendRate::new(Some(20.0));
        r.throttled(3, Some(Duration::ZERO));
        r.throttled(3, None);
        let s = r.lock();
        assert_eq!((s.rate, &s.phase), (Some(20.0), &Phase::Steady));
        assert!(s.paused_until.is_some(), "still paused as asked");
    }

    #[test]
    fn the_throttles_of_one_pause_decrease_the_rate_once() {
        let r = SendRate::new(None);
        {
            let mut s = r.lock();
            s.phase = Phase::Steady;
            s.rate = Some(100.0);
            s.adjusted = Instant::now() - Duration::from_secs(5);
        }
        r.throttled(1, Some(Duration::from_secs(1)));
        // Answers to commands in flight, throttled too while the senders wait.
        r.throttled(1, Some(Duration::from_secs(1)));
        r.throttled(1, None);
        assert_eq!(r.lock().rate, Some(100.0 * DECREASE));
        // After the pause, a throttle is news again.
        r.lock().adjusted -= Duration::from_secs(2);
        r.throttled(1, Some(Duration::ZERO));
        assert_eq!(r.lock().rate, Some(100.0 * DECREASE * DECREASE));
    }

    #[test]
    fn one_controller_per_mailbox_while_alive() {
        let a = SendRate::for_mailbox("imap|h:993|alice", None);
        let b = SendRate::for_mailbox("imap|h:993|alice", None);
        let c = SendRate::for_mailbox("imap|h:993|bob", None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
