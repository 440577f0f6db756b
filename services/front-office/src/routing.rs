//! Routing's choices, pure: which queue takes a case, which agent gets it, and whether an
//! agent has room. The inputs come from the `routing_board` projection.

use crate::agent::AgentProfile;
use crate::case::{AgentName, Category};
use crate::customer::Segment;
use crate::queue::QueueRule;

/// An agent as routing sees them: profile, whether they are on, and their open cases
/// (assigned and not resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardAgent {
    pub profile: AgentProfile,
    pub available: bool,
    pub open_cases: u32,
}

impl BoardAgent {
    pub fn has_room(&self) -> bool {
        self.open_cases < self.profile.capacity
    }
}

/// The queue that takes a case of `category` for a customer of `segment`: among those that
/// take it, the lowest rank, then the first by name (`queues` in that order already).
pub fn pick_queue(
    queues: &[QueueRule],
    category: Category,
    segment: Option<Segment>,
) -> Option<&QueueRule> {
    queues
        .iter()
        .filter(|queue| queue.takes(category, segment))
        .min_by(|a, b| (a.rank, a.queue.as_str()).cmp(&(b.rank, b.queue.as_str())))
}

/// The agent to give a case to: available, fitting the case, with room; the one with the
/// smallest share of their capacity in use, then the fewest open cases, then by name.
pub fn pick_agent(
    agents: &[BoardAgent],
    category: Category,
    segment: Option<Segment>,
) -> Option<&BoardAgent> {
    agents
        .iter()
        .filter(|agent| {
            agent.available && agent.has_room() && agent.profile.fits(category, segment)
        })
        .min_by(|a, b| {
            let share = |agent: &BoardAgent| {
                u64::from(agent.open_cases) * 1_000 / u64::from(agent.profile.capacity.max(1))
            };
            (share(a), a.open_cases, a.profile.agent.as_str()).cmp(&(
                share(b),
                b.open_cases,
                b.profile.agent.as_str(),
            ))
        })
}

/// Why a named agent may not take a case: they are at capacity. An agent routing does not
/// know (no profile) is not limited.
pub fn refuse_over_capacity(agents: &[BoardAgent], assignee: &AgentName) -> Option<u32> {
    agents
        .iter()
        .find(|agent| &agent.profile.agent == assignee)
        .filter(|agent| !agent.has_room())
        .map(|agent| agent.profile.capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::QueueName;

    fn agent(name: &str, open_cases: u32, capacity: u32, available: bool) -> BoardAgent {
        BoardAgent {
            profile: AgentProfile {
                agent: AgentName::parse("agent", name).expect("agent"),
                skills: vec![Category::Complaint],
                segments: vec![Segment::Hotel],
                capacity,
            },
            available,
            open_cases,
        }
    }

    fn queue(
        name: &str,
        categories: Vec<Category>,
        segments: Vec<Segment>,
        rank: u32,
    ) -> QueueRule {
        QueueRule {
            queue: QueueName::parse("queue", name).expect("queue"),
            categories,
            segments,
            rank,
        }
    }

    #[test]
    fn the_most_specific_queue_by_rank_takes_the_case() {
        let queues = [
            queue("general", vec![], vec![], 9),
            queue("complaints", vec![Category::Complaint], vec![], 5),
            queue(
                "complaints-b2b",
                vec![Category::Complaint],
                vec![Segment::Hotel, Segment::RealEstate],
                1,
            ),
        ];
        let name = |category, segment| {
            pick_queue(&queues, category, segment).map(|queue| queue.queue.as_str().to_owned())
        };
        assert_eq!(
            name(Category::Complaint, Some(Segment::Hotel)).as_deref(),
            Some("complaints-b2b")
        );
        assert_eq!(
            name(Category::Complaint, Some(Segment::Consumer)).as_deref(),
            Some("complaints")
        );
        assert_eq!(
            name(Category::Repair, Some(Segment::Hotel)).as_deref(),
            Some("general")
        );
        assert_eq!(pick_queue(&queues[1..], Category::Repair, None), None);
    }

    #[test]
    fn the_least_loaded_fitting_available_agent_with_room_gets_the_case() {
        let agents = [
            agent("ann", 3, 4, true),
            agent("bob", 1, 4, true),
            agent("cat", 0, 4, false),
            agent("dan", 2, 2, true),
        ];
        let picked = pick_agent(&agents, Category::Complaint, Some(Segment::Hotel));
        assert_eq!(picked.map(|a| a.profile.agent.as_str()), Some("bob"));
        assert_eq!(
            pick_agent(&agents, Category::Repair, Some(Segment::Hotel)),
            None,
            "nobody has the skill"
        );
        assert_eq!(
            pick_agent(&agents[2..], Category::Complaint, Some(Segment::Hotel)),
            None,
            "off, or full"
        );
    }

    #[test]
    fn a_full_agent_is_refused_and_an_unknown_one_is_not_limited() {
        let agents = [agent("dan", 2, 2, true), agent("ann", 1, 2, true)];
        let name = |raw| AgentName::parse("agent", raw).expect("agent");
        assert_eq!(refuse_over_capacity(&agents, &name("dan")), Some(2));
        assert_eq!(refuse_over_capacity(&agents, &name("ann")), None);
        assert_eq!(refuse_over_capacity(&agents, &name("zoe")), None);
    }
}
