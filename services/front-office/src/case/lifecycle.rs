//! Where a case is in its life, and which moves each state allows: the one table every
//! lifecycle command is checked against.
//!
//! ```text
//! open ─triage→ triaged ─assign→ assigned ⇄ waiting (on the customer / the middle office)
//!   │              │                │            │
//!   └──────────────┴──── resolve ───┴────────────┘→ resolved ─close→ closed
//!                        reopen (resolved or closed) → assigned, or open without assignee
//! ```

use super::CaseError;

/// Where a case is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
    Triaged,
    Assigned,
    Waiting(WaitingOn),
    Resolved,
    Closed,
}

/// A lifecycle state without what a waiting case waits on: what a list is filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Open,
    Triaged,
    Assigned,
    Waiting,
    Resolved,
    Closed,
}

/// What a waiting case waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingOn {
    Customer,
    MiddleOffice,
}

/// A move along the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Triage,
    Assign,
    Wait(WaitingOn),
    Resume,
    Resolve,
    Close,
    Reopen,
}

impl Lifecycle {
    /// As an error message names it.
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Open => "open",
            Lifecycle::Triaged => "triaged",
            Lifecycle::Assigned => "assigned",
            Lifecycle::Waiting(WaitingOn::Customer) => "waiting on the customer",
            Lifecycle::Waiting(WaitingOn::MiddleOffice) => "waiting on the middle office",
            Lifecycle::Resolved => "resolved",
            Lifecycle::Closed => "closed",
        }
    }

    pub fn stage(self) -> Stage {
        match self {
            Lifecycle::Open => Stage::Open,
            Lifecycle::Triaged => Stage::Triaged,
            Lifecycle::Assigned => Stage::Assigned,
            Lifecycle::Waiting(_) => Stage::Waiting,
            Lifecycle::Resolved => Stage::Resolved,
            Lifecycle::Closed => Stage::Closed,
        }
    }

    /// Resolved or closed: nobody works on it until it is reopened.
    pub fn is_finished(self) -> bool {
        matches!(self, Lifecycle::Resolved | Lifecycle::Closed)
    }

    /// Where this state goes on `step`; `has_assignee` says whether the case has an agent
    /// to go back to (a reopened case does). An illegal move names the current state.
    pub fn after(self, step: Move, has_assignee: bool) -> Result<Lifecycle, CaseError> {
        use Lifecycle::{Assigned, Closed, Open, Resolved, Triaged, Waiting};
        let next = match (step, self) {
            (Move::Triage, Open | Triaged | Assigned) => Some(Triaged),
            // Reassigning a waiting case keeps it waiting.
            (Move::Assign, Open | Triaged | Assigned) => Some(Assigned),
            (Move::Assign, Waiting(on)) => Some(Waiting(on)),
            (Move::Wait(on), Assigned | Waiting(_)) => Some(Waiting(on)),
            (Move::Resume, Waiting(_)) => Some(Assigned),
            (Move::Resolve, Open | Triaged | Assigned | Waiting(_)) => Some(Resolved),
            (Move::Close, Resolved) => Some(Closed),
            (Move::Reopen, Resolved | Closed) => Some(if has_assignee { Assigned } else { Open }),
            _ => None,
        };
        next.ok_or(CaseError::NotAllowed {
            action: step.verb(),
            state: self.name(),
        })
    }
}

impl Move {
    fn verb(self) -> &'static str {
        match self {
            Move::Triage => "triage",
            Move::Assign => "assign",
            Move::Wait(_) => "set waiting",
            Move::Resume => "resume",
            Move::Resolve => "resolve",
            Move::Close => "close",
            Move::Reopen => "reopen",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [Lifecycle; 7] = [
        Lifecycle::Open,
        Lifecycle::Triaged,
        Lifecycle::Assigned,
        Lifecycle::Waiting(WaitingOn::Customer),
        Lifecycle::Waiting(WaitingOn::MiddleOffice),
        Lifecycle::Resolved,
        Lifecycle::Closed,
    ];

    /// Every move from every state, against the table in the module's documentation.
    #[test]
    fn every_move_from_every_state() {
        use Lifecycle::*;
        let customer = Waiting(WaitingOn::Customer);
        let middle = Waiting(WaitingOn::MiddleOffice);
        let expected: [(Move, [Option<Lifecycle>; 7]); 8] = [
            (
                Move::Triage,
                [
                    Some(Triaged),
                    Some(Triaged),
                    Some(Triaged),
                    None,
                    None,
                    None,
                    None,
                ],
            ),
            (
                Move::Assign,
                [
                    Some(Assigned),
                    Some(Assigned),
                    Some(Assigned),
                    Some(customer),
                    Some(middle),
                    None,
                    None,
                ],
            ),
            (
                Move::Wait(WaitingOn::Customer),
                [
                    None,
                    None,
                    Some(customer),
                    Some(customer),
                    Some(customer),
                    None,
                    None,
                ],
            ),
            (
                Move::Wait(WaitingOn::MiddleOffice),
                [
                    None,
                    None,
                    Some(middle),
                    Some(middle),
                    Some(middle),
                    None,
                    None,
                ],
            ),
            (
                Move::Resume,
                [None, None, None, Some(Assigned), Some(Assigned), None, None],
            ),
            (
                Move::Resolve,
                [
                    Some(Resolved),
                    Some(Resolved),
                    Some(Resolved),
                    Some(Resolved),
                    Some(Resolved),
                    None,
                    None,
                ],
            ),
            (
                Move::Close,
                [None, None, None, None, None, Some(Closed), None],
            ),
            (
                Move::Reopen,
                [None, None, None, None, None, Some(Assigned), Some(Assigned)],
            ),
        ];
        for (step, outcomes) in expected {
            for (state, outcome) in STATES.into_iter().zip(outcomes) {
                assert_eq!(
                    state.after(step, true).ok(),
                    outcome,
                    "{step:?} from {state:?}"
                );
            }
        }
    }

    #[test]
    fn a_reopened_case_without_an_assignee_is_open() {
        assert_eq!(
            Lifecycle::Closed.after(Move::Reopen, false),
            Ok(Lifecycle::Open)
        );
    }

    #[test]
    fn an_illegal_move_names_the_state() {
        let error = Lifecycle::Closed
            .after(Move::Resolve, true)
            .expect_err("illegal");
        assert_eq!(error.to_string(), "cannot resolve a case that is closed");
    }
}
