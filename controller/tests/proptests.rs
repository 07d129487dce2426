//! Property tests: untrusted input never panics and is never acted on.

// Test helpers outside #[test] functions: clippy.toml's allow-unwrap-in-tests does not
// reach them, and a panic is the right failure here.
#![allow(clippy::unwrap_used)]

use controller::{
    auth::{Key, ReplayWindow},
    config::Config,
    fsm::{Event, Flags, FsmConfig, MS, State},
    node::{Node, NodeConfig},
    packet::{HEARTBEAT_LEN, Heartbeat, open},
};
use proptest::prelude::*;

fn key() -> Key {
    Key::from_bytes(b"proptest key of enough length").unwrap()
}

fn node() -> Node {
    let mut n = Node::new(
        NodeConfig {
            fsm: FsmConfig {
                priority: 100,
                preempt: true,
                interval: 10 * MS,
                multiplier: 3,
                hold_down: 0,
                switchover_timeout: 100 * MS,
                release_linger: 0,
                tie_break: 1,
                peer_tie_break: 2,
                drain: 0,
                drain_keep: false,
                startup: 0,
                wall_origin_us: 0,
            },
            node_id: 1,
            epoch: 1,
        },
        key(),
    );
    n.handle(
        Event::Start {
            healthy: true,
            reason: String::new(),
        },
        0,
    );
    n
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Init),
        Just(State::Backup),
        Just(State::Active),
        Just(State::Fault)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Heartbeat::parse(&bytes);
        let _ = open(&bytes, &key());
    }

    #[test]
    fn random_datagrams_are_never_acted_on(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..20),
        exact_len in any::<bool>(),
    ) {
        let mut n = node();
        for (i, mut d) in datagrams.into_iter().enumerate() {
            if exact_len {
                d.resize(HEARTBEAT_LEN, 0);
            }
            let actions = n.receive(&d, (i as u64 + 1) * MS);
            prop_assert!(actions.is_empty());
        }
        prop_assert_eq!(n.counters.hb_received, 0);
        prop_assert_eq!(n.fsm().state(), State::Backup);
    }

    #[test]
    fn encode_parse_roundtrip(
        st in state(), release in any::<bool>(), takeover in any::<bool>(), vip_held in any::<bool>(),
        draining in any::<bool>(), priority in any::<u8>(), node_id in any::<u32>(), interval_us in 1u32.., epoch in any::<u64>(),
        seq in any::<u64>(), term in any::<u64>(),
    ) {
        let hb = Heartbeat {
            state: st,
            flags: Flags { release, takeover, vip_held, draining },
            priority, node_id, interval_us, epoch, seq, term,
        };
        let wire = hb.encode(&key());
        prop_assert_eq!(open(&wire, &key()), Ok(hb));
    }

    #[test]
    fn any_single_byte_change_is_rejected(pos in 0usize..HEARTBEAT_LEN, xor in 1u8..) {
        let hb = Heartbeat {
            state: State::Active,
            flags: Flags::default(),
            priority: 1, node_id: 2, interval_us: 3, epoch: 4, seq: 5, term: 6,
        };
        let mut wire = hb.encode(&key());
        wire[pos] ^= xor;
        prop_assert!(open(&wire, &key()).is_err());
    }

    #[test]
    fn replay_window_accepts_each_number_once(seqs in proptest::collection::vec(1u64..300, 1..400)) {
        let mut w = ReplayWindow::default();
        let mut accepted = std::collections::HashSet::new();
        for s in seqs {
            if w.accept(s).is_ok() {
                prop_assert!(accepted.insert(s), "{} accepted twice", s);
            }
        }
    }

    #[test]
    fn random_config_text_never_panics(text in "\\PC{0,300}") {
        let _ = Config::parse(&text);
    }

    #[test]
    fn random_config_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            Just("[node]".to_string()), Just("[peer]".to_string()), Just("[heartbeat]".to_string()),
            Just("[vip]".to_string()), Just("[health]".to_string()),
            "[a-z_]{1,12} = [0-9]{1,4}", "[a-z_]{1,12} = \"[ -~]{0,12}\"",
        ], 0..20)) {
        let _ = Config::parse(&lines.join("\n"));
    }
}
