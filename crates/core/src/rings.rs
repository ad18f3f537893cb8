//! Rings and their safety rules: partitioning a deployment's devices into rings, the gate
//! that promotes the next ring, the circuit breaker that halts a failing deployment, the
//! concurrency limit, and a deterministic spread of start times across a window.

use crate::{FailureClass, PackageState};
use jiff::{SignedDuration, Timestamp};

/// FNV-1a, 64 bit: stable across builds and platforms (unlike `std`'s hasher), so a device
/// keeps its ring and its start offset from one release to the next.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Which devices a ring takes.
#[derive(Debug, Clone, PartialEq)]
pub enum RingMembers {
    /// These device ids.
    Devices(Vec<String>),
    /// This percentage (0..=100) of the devices not taken by an earlier ring, chosen by hash.
    Percent(u8),
    /// Every device not taken by an earlier ring.
    Rest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RingSpec {
    pub name: String,
    pub members: RingMembers,
}

/// Splits `devices` into one list per ring, in ring order. Each device lands in the first
/// ring that takes it; a device no ring takes is left out (the last ring is usually `Rest`).
/// A percentage ring takes the devices with the lowest hashes, rounded up (at least one).
pub fn partition(rings: &[RingSpec], devices: &[String]) -> Vec<Vec<String>> {
    let mut left: Vec<&String> = devices.iter().collect();
    let mut out = Vec::with_capacity(rings.len());
    for ring in rings {
        let taken: Vec<String> = match &ring.members {
            RingMembers::Devices(ids) => left
                .iter()
                .filter(|d| ids.contains(d))
                .map(|d| (*d).clone())
                .collect(),
            RingMembers::Percent(p) => {
                let mut by_hash = left.clone();
                by_hash.sort_by_key(|d| (stable_hash(d), (*d).clone()));
                let n = (by_hash.len() * usize::from((*p).min(100))).div_ceil(100);
                by_hash.into_iter().take(n).cloned().collect()
            }
            RingMembers::Rest => left.iter().map(|d| (*d).clone()).collect(),
        };
        left.retain(|d| !taken.contains(d));
        let mut taken = taken;
        taken.sort();
        out.push(taken);
    }
    out
}

/// Classes that say something about the patch itself. Others (offline devices, full disks,
/// unreachable mirrors, locks) are about the device or its surroundings and do not count
/// against the patch.
pub fn implicates_patch(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::InstallScriptFailed
            | FailureClass::DependencyConflict
            | FailureClass::VerificationFailed
            | FailureClass::RepoInvalid
            | FailureClass::PackageNotFound
            | FailureClass::Unknown
    )
}

/// What a ring's devices have reported so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RingTally {
    /// Devices whose every package is verified, pending reboot, not applicable or skipped.
    pub succeeded: u32,
    /// Devices with at least one failure that implicates the patch.
    pub failed_patch: u32,
    /// Devices that failed for other reasons (offline, disk full, mirror down, ...).
    pub failed_other: u32,
    /// Devices still waiting or running.
    pub pending: u32,
}

impl RingTally {
    /// Adds one device given its packages' outcomes.
    pub fn add_device(&mut self, outcomes: &[(PackageState, Option<FailureClass>)]) {
        if outcomes.iter().any(|(s, _)| *s == PackageState::Pending) {
            self.pending += 1;
        } else if outcomes
            .iter()
            .any(|(s, c)| *s == PackageState::Failed && c.is_some_and(implicates_patch))
        {
            self.failed_patch += 1;
        } else if outcomes
            .iter()
            .any(|(s, _)| matches!(s, PackageState::Failed | PackageState::DeviceOffline))
        {
            self.failed_other += 1;
        } else {
            self.succeeded += 1;
        }
    }

    pub fn total(&self) -> u32 {
        self.succeeded + self.failed_patch + self.failed_other + self.pending
    }
}

/// When the next ring may start.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Successes among the devices that finished for reasons of the patch (0.0..=1.0).
    pub min_success_rate: f64,
    pub min_successes: u32,
    /// How long after the ring finished before promotion.
    pub soak: SignedDuration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GateDecision {
    Promote,
    /// Not yet: devices still running, or the soak time has not passed.
    Wait {
        until: Option<Timestamp>,
        reason: String,
    },
    /// The ring finished and does not meet the gate: it never will without intervention.
    Hold {
        reason: String,
    },
}

/// `finished_at`: when the ring's last device reported (None while devices are pending).
pub fn gate_decision(
    gate: &Gate,
    tally: &RingTally,
    finished_at: Option<Timestamp>,
    now: Timestamp,
) -> GateDecision {
    if tally.pending > 0 {
        return GateDecision::Wait {
            until: None,
            reason: format!("{} device(s) of the ring still running", tally.pending),
        };
    }
    let judged = tally.succeeded + tally.failed_patch;
    let rate = if judged == 0 {
        0.0
    } else {
        f64::from(tally.succeeded) / f64::from(judged)
    };
    if tally.succeeded < gate.min_successes {
        return GateDecision::Hold {
            reason: format!(
                "{} success(es), the gate needs at least {}",
                tally.succeeded, gate.min_successes
            ),
        };
    }
    if rate < gate.min_success_rate {
        return GateDecision::Hold {
            reason: format!(
                "success rate {:.0}% is below the gate's {:.0}%",
                rate * 100.0,
                gate.min_success_rate * 100.0
            ),
        };
    }
    let Some(done) = finished_at else {
        return GateDecision::Wait {
            until: None,
            reason: "the ring has not finished".into(),
        };
    };
    let until = done.checked_add(gate.soak).unwrap_or(done);
    if now < until {
        return GateDecision::Wait {
            until: Some(until),
            reason: format!("soaking until {until}"),
        };
    }
    GateDecision::Promote
}

/// Halts a deployment whose patch-implicating failure rate crosses a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    /// Failure rate (0.0..=1.0) among finished devices at which to halt.
    pub max_failure_rate: f64,
    /// Do not judge on fewer finished devices than this.
    pub min_finished: u32,
}

/// `Some(reason)` when the deployment must halt.
pub fn breaker_trips(breaker: &Breaker, tally: &RingTally) -> Option<String> {
    let finished = tally.succeeded + tally.failed_patch;
    if finished == 0 || finished < breaker.min_finished {
        return None;
    }
    let rate = f64::from(tally.failed_patch) / f64::from(finished);
    (rate >= breaker.max_failure_rate).then(|| {
        format!(
            "{} of {} finished device(s) failed for reasons that implicate the patch ({:.0}% ≥ {:.0}%)",
            tally.failed_patch,
            finished,
            rate * 100.0,
            breaker.max_failure_rate * 100.0
        )
    })
}

/// At most this many devices at once within a ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Concurrency {
    Devices(u32),
    Percent(u8),
    Unlimited,
}

/// How many of a ring's devices may run at once (at least one).
pub fn concurrency_limit(c: Concurrency, ring_size: usize) -> usize {
    let n = match c {
        Concurrency::Devices(n) => n as usize,
        Concurrency::Percent(p) => (ring_size * usize::from(p.min(100))).div_ceil(100),
        Concurrency::Unlimited => ring_size,
    };
    n.clamp(1, ring_size.max(1))
}

/// A device's start offset into a window: spread by hash over the part of the window that
/// still leaves `budget` for the work, so a fleet does not hit the mirror all at once.
pub fn spread_offset(
    device_id: &str,
    window: SignedDuration,
    budget: SignedDuration,
) -> SignedDuration {
    let room = window.checked_sub(budget).unwrap_or(SignedDuration::ZERO);
    let secs = room.as_secs();
    if secs <= 0 {
        return SignedDuration::ZERO;
    }
    SignedDuration::from_secs((stable_hash(device_id) % secs as u64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass as C;
    use PackageState as S;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("dev_{i:04}")).collect()
    }

    #[test]
    fn partition_cases() {
        let devices = ids(100);
        let rings = |members: Vec<RingMembers>| -> Vec<RingSpec> {
            members
                .into_iter()
                .enumerate()
                .map(|(i, m)| RingSpec {
                    name: format!("r{i}"),
                    members: m,
                })
                .collect()
        };
        let sizes = |p: &[Vec<String>]| p.iter().map(Vec::len).collect::<Vec<_>>();
        // (rings, expected sizes)
        let cases: Vec<(Vec<RingMembers>, Vec<usize>)> = vec![
            (
                vec![RingMembers::Percent(10), RingMembers::Rest],
                vec![10, 90],
            ),
            (
                vec![
                    RingMembers::Percent(1),
                    RingMembers::Percent(50),
                    RingMembers::Rest,
                ],
                vec![1, 50, 49],
            ),
            (
                vec![RingMembers::Percent(0), RingMembers::Rest],
                vec![0, 100],
            ),
            (
                vec![
                    RingMembers::Devices(vec!["dev_0007".into(), "nope".into()]),
                    RingMembers::Rest,
                ],
                vec![1, 99],
            ),
            (vec![RingMembers::Percent(10)], vec![10]),
        ];
        for (members, want) in cases {
            let p = partition(&rings(members.clone()), &devices);
            assert_eq!(sizes(&p), want, "{members:?}");
            let mut all: Vec<&String> = p.iter().flatten().collect();
            all.sort();
            all.dedup();
            assert_eq!(
                all.len(),
                want.iter().sum::<usize>(),
                "no device in two rings"
            );
        }
        // Deterministic and stable: the same devices, in any order, give the same rings; a
        // small fleet's 10% pilot still has one device.
        let spec = rings(vec![RingMembers::Percent(10), RingMembers::Rest]);
        let mut shuffled = devices.clone();
        shuffled.reverse();
        assert_eq!(partition(&spec, &devices), partition(&spec, &shuffled));
        assert_eq!(sizes(&partition(&spec, &ids(3))), vec![1, 2]);
        // FNV-1a 64 of "dev_0001", computed independently (Python).
        assert_eq!(
            stable_hash("dev_0001"),
            0x6009_7816_5203_a676,
            "the hash is part of the contract"
        );
    }

    fn tally(devices: &[&[(S, Option<C>)]]) -> RingTally {
        let mut t = RingTally::default();
        for d in devices {
            t.add_device(d);
        }
        t
    }

    #[test]
    fn tally_counts_devices_by_what_implicates_the_patch() {
        let t = tally(&[
            &[(S::Verified, None), (S::NotApplicable, None)],
            &[
                (S::Verified, None),
                (S::Failed, Some(C::InstallScriptFailed)),
            ],
            &[(S::Failed, Some(C::DiskFull))],
            &[(S::DeviceOffline, Some(C::DeviceOffline))],
            &[(S::Failed, Some(C::RepoUnreachable))],
            &[(S::Pending, None)],
            &[(S::PendingReboot, Some(C::RebootPending))],
        ]);
        assert_eq!(
            t,
            RingTally {
                succeeded: 2,
                failed_patch: 1,
                failed_other: 3,
                pending: 1
            }
        );
    }

    #[test]
    fn gate_decisions() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().expect("ts");
        let hour_ago = now.checked_sub(SignedDuration::from_hours(1)).expect("ts");
        let gate = Gate {
            min_success_rate: 0.9,
            min_successes: 3,
            soak: SignedDuration::from_mins(30),
        };
        let t = |s, f, o, p| RingTally {
            succeeded: s,
            failed_patch: f,
            failed_other: o,
            pending: p,
        };
        let cases = [
            (t(5, 0, 0, 1), Some(hour_ago), "wait"),
            (t(5, 0, 0, 0), Some(now), "wait"),
            (t(5, 0, 0, 0), Some(hour_ago), "promote"),
            (t(2, 0, 0, 0), Some(hour_ago), "hold"),
            (t(9, 2, 0, 0), Some(hour_ago), "hold"),
            (t(18, 1, 5, 0), Some(hour_ago), "promote"),
        ];
        for (tally, finished, want) in cases {
            let got = match gate_decision(&gate, &tally, finished, now) {
                GateDecision::Promote => "promote",
                GateDecision::Wait { .. } => "wait",
                GateDecision::Hold { .. } => "hold",
            };
            assert_eq!(got, want, "{tally:?} finished {finished:?}");
        }
    }

    #[test]
    fn breaker_counts_only_patch_failures() {
        let b = Breaker {
            max_failure_rate: 0.3,
            min_finished: 3,
        };
        let t = |s, f, o| RingTally {
            succeeded: s,
            failed_patch: f,
            failed_other: o,
            pending: 0,
        };
        assert_eq!(breaker_trips(&b, &t(1, 1, 0)), None, "too few finished");
        assert!(breaker_trips(&b, &t(2, 1, 0)).is_some());
        assert_eq!(
            breaker_trips(&b, &t(7, 2, 50)),
            None,
            "offline/disk-full devices do not count"
        );
        assert!(breaker_trips(&b, &t(0, 3, 0)).is_some_and(|r| r.contains("3 of 3")));
    }

    #[test]
    fn concurrency_and_spread() {
        assert_eq!(concurrency_limit(Concurrency::Devices(5), 100), 5);
        assert_eq!(concurrency_limit(Concurrency::Devices(500), 100), 100);
        assert_eq!(concurrency_limit(Concurrency::Percent(10), 95), 10);
        assert_eq!(concurrency_limit(Concurrency::Percent(1), 3), 1);
        assert_eq!(concurrency_limit(Concurrency::Unlimited, 0), 1);
        let window = SignedDuration::from_hours(4);
        let budget = SignedDuration::from_hours(1);
        let offsets: Vec<i64> = ids(1000)
            .iter()
            .map(|d| spread_offset(d, window, budget).as_secs())
            .collect();
        assert!(offsets.iter().all(|o| (0..3 * 3600).contains(o)));
        // Spread: every 30-minute slice of the usable 3 hours gets devices.
        for slice in 0..6 {
            let n = offsets.iter().filter(|o| **o / 1800 == slice).count();
            assert!((100..=240).contains(&n), "slice {slice}: {n}");
        }
        assert_eq!(
            spread_offset("dev_0001", window, budget),
            spread_offset("dev_0001", window, budget)
        );
        assert_eq!(
            spread_offset("x", budget, window),
            SignedDuration::ZERO,
            "no room: start at once"
        );
    }
}
