//! Price rounds: what each node's market sends, delivered to the other
//! members of its domain, and the votes they draw carried back together.

use std::collections::BTreeMap;

use lppsp_core::market::MarketOutput;
use lppsp_core::wire::Message;

use crate::SimError;

use super::{Ev, Sim, TraceEvent};

impl Sim<'_> {
    pub(super) fn flush_market(&mut self, i: usize, d: usize) {
        self.flush_market_batching(i, d, None);
    }

    /// As [`Sim::flush_market`]; votes go into `votes` (per proposer) when
    /// given, to travel as one event.
    pub(super) fn flush_market_batching(
        &mut self,
        i: usize,
        d: usize,
        mut votes: Option<&mut BTreeMap<usize, Vec<(usize, Message)>>>,
    ) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        let outputs = n.market.drain();
        for out in outputs {
            match out {
                MarketOutput::Broadcast(Message::Vote {
                    epoch,
                    proposer,
                    price,
                    yes,
                }) if votes.is_some() => {
                    let to = self.index.get(&proposer).copied();
                    if let (Some(batch), Some(to)) = (votes.as_deref_mut(), to) {
                        let vote = Message::Vote {
                            epoch,
                            proposer,
                            price,
                            yes,
                        };
                        batch.entry(to).or_default().push((i, vote));
                    }
                }
                MarketOutput::Broadcast(message) => {
                    let at = self.now + self.latency();
                    self.push(
                        at,
                        Ev::Round {
                            from: i,
                            domain: d,
                            message: Box::new(message),
                        },
                    );
                }
                // Simulated members are honest: nothing to count.
                MarketOutput::Refused { .. } => {}
                MarketOutput::Committed(c) => {
                    if let Some(n) = self.nodes.get_mut(i) {
                        if let Some(b) = &mut n.balancer {
                            b.on_commit(c.price);
                            if self.opts.trace_node == Some(i) {
                                self.out.trace.push(TraceEvent::Commit(c.price));
                            }
                        }
                    }
                }
            }
        }
    }

    pub(super) fn on_round(
        &mut self,
        from: usize,
        domain: usize,
        message: Message,
    ) -> Result<(), SimError> {
        let Some(sender) = self.nodes.get(from).map(|n| n.id) else {
            return Ok(());
        };
        // The book passes on round messages from its members only.
        if self
            .books
            .get(domain)
            .and_then(|b| b.peer(&sender))
            .is_none()
        {
            return Ok(());
        }
        let targets = 0..self.nodes.len();
        let mut votes: BTreeMap<usize, Vec<(usize, Message)>> = BTreeMap::new();
        for i in targets {
            if i == from || self.domain(i) != domain || self.lost() {
                continue;
            }
            let now = self.now;
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let live = self.live.get(domain).map(Vec::as_slice).unwrap_or_default();
            n.market.on_message(now, sender, &message, live);
            self.flush_market_batching(i, domain, Some(&mut votes));
        }
        // The votes this message drew reach each proposer after one latency.
        for (_, batch) in votes {
            let at = self.now + self.latency();
            self.push(
                at,
                Ev::Votes {
                    domain,
                    votes: batch,
                },
            );
        }
        Ok(())
    }
}
