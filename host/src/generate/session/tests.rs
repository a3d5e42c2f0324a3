//! The generator's tests: reproducibility, the reference's shapes and mix,
//! and the fixed flaws.

use std::collections::HashMap;

use chrono::TimeZone;
use rand::SeedableRng;

use super::*;

fn generator(seed: u64) -> Generator {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    Generator::new(StdRng::seed_from_u64(seed), 5, start, 250_000)
}

#[test]
fn a_seed_reproduces_the_whole_output() {
    let run = |seed| {
        let mut generator = generator(seed);
        (0..2_000)
            .map(|_| serde_json::to_string(&generator.next_event()).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn timestamps_look_like_the_reference() {
    assert_eq!(
        timestamp(1_767_225_600_000_000),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(
        timestamp(1_767_225_600_000_250),
        "2026-01-01T00:00:00.000250+00:00"
    );
}

/// The mix stays in the neighbourhood of the reference's (semantics.md §2),
/// allowing for the fixes (multi-item carts, `session_end` after a purchase).
#[test]
fn the_mix_is_in_the_reference_ranges() {
    let mut generator = generator(42);
    let mut types: HashMap<&str, u64> = HashMap::new();
    let mut sessions: HashMap<String, (&str, bool)> = HashMap::new();
    let total = 100_000;
    for _ in 0..total {
        let event = generator.next_event();
        *types.entry(event.event_type).or_default() += 1;
        let entry = sessions
            .entry(event.session_id.clone())
            .or_insert(("", false));
        if let Details::SessionStart { user_segment, .. } = event.details {
            entry.0 = user_segment;
        }
        entry.1 |= event.event_type == "purchase";
    }
    let share = |t: &str| types.get(t).copied().unwrap_or(0) as f64 / f64::from(total);
    assert!((0.30..0.50).contains(&share("product_viewed")), "{types:?}");
    assert!((0.07..0.15).contains(&share("session_start")), "{types:?}");
    assert!((0.07..0.15).contains(&share("page_view")), "{types:?}");
    assert!((0.03..0.08).contains(&share("search")), "{types:?}");
    assert!((0.05..0.16).contains(&share("add_to_cart")), "{types:?}");
    assert!((0.005..0.04).contains(&share("purchase")), "{types:?}");
    let per_session = f64::from(total) / sessions.len() as f64;
    assert!(
        (6.0..14.0).contains(&per_session),
        "{per_session} events per session"
    );

    let conversion = |segment: &str| {
        let of: Vec<bool> = sessions
            .values()
            .filter(|s| s.0 == segment)
            .map(|s| s.1)
            .collect();
        of.iter().filter(|bought| **bought).count() as f64 / of.len() as f64
    };
    let (new, returning, vip, churned) = (
        conversion("new"),
        conversion("returning"),
        conversion("vip"),
        conversion("churned"),
    );
    assert!(
        vip > returning && returning > new && new > churned,
        "{new} {returning} {vip} {churned}"
    );
    assert!((0.20..0.55).contains(&vip), "vip conversion {vip}");
}

#[test]
fn a_cart_can_hold_several_items_and_completed_sessions_end() {
    let mut generator = generator(3);
    let mut multi_item_purchase = false;
    let mut ended_after_purchase = false;
    let mut purchased: HashMap<String, bool> = HashMap::new();
    for _ in 0..50_000 {
        let event = generator.next_event();
        match &event.details {
            Details::Purchase { items, .. } => {
                multi_item_purchase |= items.len() > 1;
                purchased.insert(event.session_id.clone(), true);
            }
            Details::SessionEnd {
                purchase_completed, ..
            } if purchased.contains_key(&event.session_id) => {
                assert!(purchase_completed);
                assert_eq!(event.session_state, "completed");
                ended_after_purchase = true;
            }
            _ => {}
        }
    }
    assert!(multi_item_purchase, "some purchase has several items");
    assert!(ended_after_purchase, "completed sessions send session_end");
}

#[test]
fn device_and_place_stay_fixed_within_a_session() {
    let mut generator = generator(5);
    let mut seen: HashMap<String, String> = HashMap::new();
    for _ in 0..20_000 {
        let event = generator.next_event();
        let value = serde_json::to_value(&event).unwrap();
        let fingerprint = format!("{}{}", value["device"], value["geo"]);
        let first = seen
            .entry(event.session_id.clone())
            .or_insert_with(|| fingerprint.clone());
        assert_eq!(*first, fingerprint, "session {}", event.session_id);
    }
}
