//! Rate limits as GCRA token buckets, shared by the server (which enforces them) and the browser
//! (which paces itself by them, so a paste or a held-down key never gets its connection closed).
//! The same arithmetic on both sides is the point: a client pacing by this never finds the
//! server's bucket empty, up to network jitter (see [`Rate::paced`]).
//!
//! A bucket is one number, its theoretical arrival time (`tat`); the quota ([`Rate`]) is kept
//! once, by whoever owns the buckets, instead of in every bucket. Time is in nanoseconds from
//! any fixed origin, so a fresh bucket (`tat` 0) is full.

use serde::{Deserialize, Serialize};

/// A quota: `per_sec` units a second on average, `burst` at once from a full bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_sec` a second with bursts of `burst`; none when `per_sec` is 0 (no limit). A burst
    /// of 0 means one second's worth.
    pub fn new(per_sec: u32, burst: u32) -> Option<Self> {
        (per_sec > 0).then_some(Self {
            per_sec,
            burst: if burst == 0 { per_sec } else { burst },
        })
    }

    /// The quota a client keeps to so that the server never refuses it: a tenth under the
    /// server's rate and burst. Frames that left at the pace can arrive bunched (a delayed frame
    /// followed by one on time); the slack absorbs that.
    pub fn paced(self) -> Self {
        Self {
            per_sec: (self.per_sec - self.per_sec / 10).max(1),
            burst: (self.burst - self.burst / 10).max(1),
        }
    }

    /// Nanoseconds one unit adds to the bucket's arrival time.
    fn interval(self) -> u64 {
        1_000_000_000 / u64::from(self.per_sec.max(1))
    }
}

/// One bucket's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    tat: u64,
}

impl Bucket {
    /// Takes `n` units at `now` if the bucket holds them; otherwise takes nothing and says how
    /// many nanoseconds until it would. More units than the burst pass only from a full bucket
    /// (never a request that can wait forever).
    pub fn take(&mut self, rate: Rate, now: u64, n: u32) -> Result<(), u64> {
        let interval = rate.interval();
        let tolerance = interval.saturating_mul(u64::from(rate.burst));
        let start = self.tat.max(now);
        let next = start.saturating_add(interval.saturating_mul(u64::from(n)));
        if next <= now.saturating_add(tolerance) || self.tat <= now && n > rate.burst {
            self.tat = next;
            Ok(())
        } else if n > rate.burst {
            Err(self.tat - now)
        } else {
            Err(next - tolerance - now)
        }
    }

    /// Makes the bucket full again.
    pub fn reset(&mut self) {
        self.tat = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_per_interval() {
        let rate = Rate::new(10, 3).expect("a rate");
        let mut b = Bucket::default();
        let now = 5_000 * MS;
        for _ in 0..3 {
            assert_eq!(b.take(rate, now, 1), Ok(()));
        }
        assert_eq!(b.take(rate, now, 1), Err(100 * MS));
        assert_eq!(b.take(rate, now + 99 * MS, 1), Err(MS));
        assert_eq!(b.take(rate, now + 100 * MS, 1), Ok(()));
        // Idle for long: full again, never more than the burst.
        let later = now + 10_000 * MS;
        for _ in 0..3 {
            assert_eq!(b.take(rate, later, 1), Ok(()));
        }
        assert!(b.take(rate, later, 1).is_err());
    }

    #[test]
    fn several_units_are_charged_together() {
        let rate = Rate::new(100, 100).expect("a rate");
        let mut b = Bucket::default();
        let now = 1_000 * MS;
        assert_eq!(b.take(rate, now, 60), Ok(()));
        // 40 left: 50 need 10 more, 100 ms.
        assert_eq!(b.take(rate, now, 50), Err(100 * MS));
        assert_eq!(b.take(rate, now, 40), Ok(()));
    }

    #[test]
    fn more_than_the_burst_passes_only_from_a_full_bucket() {
        let rate = Rate::new(10, 2).expect("a rate");
        let mut b = Bucket::default();
        let now = 1_000 * MS;
        assert_eq!(b.take(rate, now, 5), Ok(()));
        assert_eq!(b.take(rate, now, 5), Err(500 * MS));
        assert_eq!(b.take(rate, now + 500 * MS, 5), Ok(()));
    }

    #[test]
    fn a_pacing_client_is_never_refused() {
        let server = Rate::new(10, 30).expect("a rate");
        let client = server.paced();
        assert_eq!((client.per_sec, client.burst), (9, 27));
        let (mut theirs, mut ours) = (Bucket::default(), Bucket::default());
        // 200 frames as fast as the client's bucket lets them go; the server sees each on
        // arrival, 0–3 ms later.
        let mut now = 1_000 * MS;
        for i in 0..200u64 {
            if let Err(wait) = ours.take(client, now, 1) {
                now += wait;
                ours.take(client, now, 1).expect("after the wait");
            }
            let arrival = now + (i * 7 % 4) * MS;
            assert_eq!(theirs.take(server, arrival, 1), Ok(()), "frame {i}");
        }
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        assert_eq!(Rate::new(0, 10), None);
        assert_eq!(Rate::new(5, 0).map(|r| r.burst), Some(5));
    }
}
