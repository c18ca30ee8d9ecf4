//! QEMU's two job tables: which status may follow which, and which verb
//! (command) a job accepts in which status.
//!
//! The tables are facts of QEMU 10.0's interface: a verb refused here is
//! refused by qemu-storage-daemon with the same message. Rows and columns
//! follow the schema order of [`JobStatus`] and [`JobVerb`].

use qapi::types::{JobStatus, JobVerb};

/// Position of `s` in schema order (the tables' column index).
const fn index(s: JobStatus) -> usize {
    match s {
        JobStatus::Undefined => 0,
        JobStatus::Created => 1,
        JobStatus::Running => 2,
        JobStatus::Paused => 3,
        JobStatus::Ready => 4,
        JobStatus::Standby => 5,
        JobStatus::Waiting => 6,
        JobStatus::Pending => 7,
        JobStatus::Aborting => 8,
        JobStatus::Concluded => 9,
        JobStatus::Null => 10,
    }
}

// Column letters: U(ndefined) C(reated) R(unning) P(aused) Y (readY)
// S(tandby) W(aiting) D (penDing) X (aborting) E (concludEd) N(ull).

/// `TRANSITIONS[from][to]`: whether a job in status `from` may move to `to`.
const TRANSITIONS: [[bool; 11]; 11] = {
    const O: bool = false;
    const I: bool = true;
    [
        //U  C  R  P  Y  S  W  D  X  E  N
        [O, I, O, O, O, O, O, O, O, O, O], // undefined
        [O, O, I, O, O, O, O, O, I, O, I], // created
        [O, O, O, I, I, O, I, O, I, O, O], // running
        [O, O, I, O, O, O, O, O, O, O, O], // paused
        [O, O, O, O, O, I, I, O, I, O, O], // ready
        [O, O, O, O, I, O, O, O, O, O, O], // standby
        [O, O, O, O, O, O, O, I, I, O, O], // waiting
        [O, O, O, O, O, O, O, O, I, I, O], // pending
        [O, O, O, O, O, O, O, O, I, I, O], // aborting
        [O, O, O, O, O, O, O, O, O, O, I], // concluded
        [O, O, O, O, O, O, O, O, O, O, O], // null
    ]
};

/// `VERBS[verb][status]`: whether a job in `status` accepts `verb`.
const VERBS: [[bool; 11]; 8] = {
    const O: bool = false;
    const I: bool = true;
    [
        //U  C  R  P  Y  S  W  D  X  E  N
        [O, I, I, I, I, I, I, I, O, O, O], // cancel
        [O, I, I, I, I, I, O, O, O, O, O], // pause
        [O, I, I, I, I, I, O, O, O, O, O], // resume
        [O, I, I, I, I, I, O, O, O, O, O], // set-speed
        [O, O, O, O, I, I, O, O, O, O, O], // complete
        [O, O, O, O, O, O, O, O, O, I, O], // dismiss
        [O, O, O, O, O, O, O, I, O, O, O], // finalize
        [O, I, I, I, I, I, O, O, O, O, O], // change
    ]
};

const fn verb_index(v: JobVerb) -> usize {
    match v {
        JobVerb::Cancel => 0,
        JobVerb::Pause => 1,
        JobVerb::Resume => 2,
        JobVerb::SetSpeed => 3,
        JobVerb::Complete => 4,
        JobVerb::Dismiss => 5,
        JobVerb::Finalize => 6,
        JobVerb::Change => 7,
    }
}

/// Whether a job may go from status `from` to status `to`. Staying in the
/// same status is allowed only where QEMU's table allows it (`aborting`).
pub fn transition_allowed(from: JobStatus, to: JobStatus) -> bool {
    TRANSITIONS[index(from)][index(to)]
}

/// Whether a job in `status` accepts `verb`.
pub fn verb_allowed(verb: JobVerb, status: JobStatus) -> bool {
    VERBS[verb_index(verb)][index(status)]
}

/// QEMU's message for a verb a job refuses in its current status.
pub fn verb_refused(id: &str, status: JobStatus, verb: JobVerb) -> String {
    format!(
        "Job '{id}' in state '{}' cannot accept command verb '{}'",
        status.as_str(),
        verb.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_schema_order() {
        for (i, s) in JobStatus::ALL.iter().enumerate() {
            assert_eq!(index(*s), i);
        }
        for (i, v) in JobVerb::ALL.iter().enumerate() {
            assert_eq!(verb_index(*v), i);
        }
    }

    /// The allowed (from, to) pairs, written out by name.
    #[test]
    fn transitions_by_name() {
        use JobStatus::*;
        let allowed = [
            (Undefined, Created),
            (Created, Running),
            (Created, Aborting),
            (Created, Null),
            (Running, Paused),
            (Running, Ready),
            (Running, Waiting),
            (Running, Aborting),
            (Paused, Running),
            (Ready, Standby),
            (Ready, Waiting),
            (Ready, Aborting),
            (Standby, Ready),
            (Waiting, Pending),
            (Waiting, Aborting),
            (Pending, Aborting),
            (Pending, Concluded),
            (Aborting, Aborting),
            (Aborting, Concluded),
            (Concluded, Null),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    transition_allowed(*from, *to),
                    allowed.contains(&(*from, *to)),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    /// The statuses in which each verb is accepted, written out by name.
    #[test]
    fn verbs_by_name() {
        use JobStatus::*;
        let active = [Created, Running, Paused, Ready, Standby];
        let expect = |v: JobVerb| -> Vec<JobStatus> {
            match v {
                JobVerb::Cancel => vec![Created, Running, Paused, Ready, Standby, Waiting, Pending],
                JobVerb::Pause | JobVerb::Resume | JobVerb::SetSpeed | JobVerb::Change => {
                    active.to_vec()
                }
                JobVerb::Complete => vec![Ready, Standby],
                JobVerb::Dismiss => vec![Concluded],
                JobVerb::Finalize => vec![Pending],
            }
        };
        for v in JobVerb::ALL {
            for s in JobStatus::ALL {
                assert_eq!(
                    verb_allowed(*v, *s),
                    expect(*v).contains(s),
                    "{} in {}",
                    v.as_str(),
                    s.as_str()
                );
            }
        }
    }

    #[test]
    fn refusal_text() {
        assert_eq!(
            verb_refused("j1", JobStatus::Concluded, JobVerb::SetSpeed),
            "Job 'j1' in state 'concluded' cannot accept command verb 'set-speed'"
        );
    }
}
