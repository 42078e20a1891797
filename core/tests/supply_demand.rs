//! Market samples measure supply and demand at the sampled price: supply is
//! the power offered there (busy or not) by nodes whose reserve is at or
//! below it; demand is what nodes report willing to buy there.

use std::net::SocketAddr;
use std::time::Duration;

use lppsp_core::beacon::VerifiedBeacon;
use lppsp_core::book::{Book, BookConfig};
use lppsp_core::market::{sample_book, OwnShare};
use lppsp_core::wire::{Arch, Endpoint, Hand, Message};
use lppsp_core::{NodeId, Price};

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

fn book() -> Book {
    Book::new(BookConfig {
        me: NodeId::from_public_key_der(b"me"),
        tick: Duration::from_millis(1000),
        expire_ticks: 3,
        max_skew: Duration::from_secs(30),
        protocol_major: 1,
    })
}

struct Peer {
    id: NodeId,
    seq: u64,
}

impl Peer {
    fn new(name: &str) -> Self {
        Self {
            id: NodeId::from_public_key_der(name.as_bytes()),
            seq: 0,
        }
    }

    fn beacon(
        &mut self,
        message: Message,
        slots: u32,
        reserve: Option<Price>,
        queue: Option<u64>,
    ) -> VerifiedBeacon {
        self.seq += 1;
        let hand = matches!(message, Message::Hand(_));
        VerifiedBeacon {
            node: self.id,
            seq: self.seq,
            price: price("1"),
            message,
            cert_der: hand.then(Vec::new),
            protocol: hand.then(|| "1.0".to_string()),
            software: None,
            queue,
            slots: hand.then_some(slots),
            reserve: if hand { reserve } else { None },
            epoch: None,
        }
    }

    /// A compute node's Hand (100 MFLOPS) and Idle (busy, with `queue`).
    fn compute(&mut self, book: &mut Book, slots: u32, reserve: Option<Price>, queue: u64) {
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hand = Message::Hand(Hand {
            addr: Endpoint(src),
            power: 100,
            arch: Arch::new("x86_64").unwrap(),
            is_client: false,
            remaining_bounty: None,
        });
        let b = self.beacon(hand, slots, reserve, None);
        book.handle_beacon(0, src, b).unwrap();
        let b = self.beacon(Message::Idle { idle: queue == 0 }, 0, None, Some(queue));
        book.handle_beacon(0, src, b).unwrap();
    }
}

#[test]
fn supply_counts_busy_nodes_at_or_above_their_reserve() {
    let mut b = book();
    // Two busy nodes of 2 slots: one with no reserve, one at 1.5.
    Peer::new("a").compute(&mut b, 2, None, 2);
    Peer::new("b").compute(&mut b, 2, Some(price("1.5")), 2);
    let at_1 = sample_book(&b, 0, price("1"), None);
    assert_eq!(at_1.supply_mflops, 200, "busy, yet on offer: {at_1:?}");
    let at_2 = sample_book(&b, 0, price("2"), None);
    assert_eq!(at_2.supply_mflops, 400, "{at_2:?}");
    assert_eq!(at_1.demand_tasks, 4);
    // Our own share counts power x slots offered.
    let own = OwnShare {
        queue: 1,
        power: 50,
        slots: 3,
    };
    let with_own = sample_book(&b, 0, price("2"), Some(own));
    assert_eq!(with_own.supply_mflops, 550);
    assert_eq!(with_own.demand_tasks, 5);
    assert_eq!(with_own.nodes, 3);
}

#[test]
fn a_hands_reserve_is_kept_and_any_amount_is_bounded_by_the_grammar() {
    let mut b = book();
    let mut p = Peer::new("c");
    p.compute(&mut b, 1, Some(Price::from_micros(u64::MAX)), 0);
    let peer = b.peers().next().unwrap();
    assert_eq!(peer.reserve, Price::from_micros(u64::MAX));
    // Never on offer, whatever the price.
    assert_eq!(
        sample_book(&b, 0, Price::from_micros(u64::MAX - 1), None).supply_mflops,
        0
    );
    // A later Hand without the header means no reserve.
    p.compute(&mut b, 1, None, 0);
    assert_eq!(b.peers().next().unwrap().reserve, Price::ZERO);
}
