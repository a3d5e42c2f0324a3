//! The session state machine and the interleaving of live sessions
//! (semantics.md §2), with the reference generator's flaws fixed:
//!
//! - a cart can hold several items (a shopper with a cart may add more);
//! - a completed session sends `session_end` after its purchase;
//! - device and place are drawn once per session, not per event;
//! - the rate is honoured (see `super::run`);
//! - every ID comes from the seeded generator, so a seed reproduces the
//!   whole output.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::catalog::{
    Catalog, Device, PAGE_TYPES, PAYMENT_METHODS, Place, SEARCH_QUERIES, Segment, draw_device,
    draw_place,
};
use super::event::{Details, Event, Item};

/// Sessions idle this long (simulated time) end.
const IDLE_LIMIT_MICROS: i64 = 10 * 60 * 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Browsing,
    Shopping,
    Checkout,
    Completed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::New | Self::Browsing => "browsing",
            Self::Shopping => "shopping",
            Self::Checkout => "checkout",
            Self::Completed => "completed",
        }
    }
}

#[derive(Debug)]
struct Session {
    id: String,
    user: usize,
    segment: Segment,
    will_purchase: bool,
    device: Device,
    place: Place,
    state: State,
    started: i64,
    last: i64,
    target_events: u32,
    target_micros: i64,
    events: u32,
    pages: u32,
    products_viewed: u32,
    last_product: Option<usize>,
    cart: Vec<Item>,
}

impl Session {
    fn cart_total(&self) -> f64 {
        money(
            self.cart
                .iter()
                .map(|item| item.price * f64::from(item.quantity))
                .sum(),
        )
    }

    fn cart_items(&self) -> u32 {
        self.cart.iter().map(|item| item.quantity).sum()
    }
}

/// What the generator has done so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Events produced.
    pub events: u64,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions that bought.
    pub purchases: u64,
}

/// Produces events one at a time, deterministically from its seed.
pub struct Generator {
    rng: StdRng,
    catalog: Catalog,
    live: Vec<Session>,
    max_live: usize,
    current: Option<usize>,
    streak: u32,
    clock: i64,
    step: i64,
    counts: Counts,
}

impl Generator {
    /// A generator of `max_live` interleaved sessions whose clock starts at
    /// `start` and advances `step_micros` per event.
    pub fn new(mut rng: StdRng, max_live: usize, start: DateTime<Utc>, step_micros: i64) -> Self {
        let catalog = Catalog::generate(&mut rng, 10_000, 500);
        Self {
            rng,
            catalog,
            live: Vec::new(),
            max_live: max_live.max(1),
            current: None,
            streak: 0,
            clock: start.timestamp_micros(),
            step: step_micros.max(1),
            counts: Counts::default(),
        }
    }

    /// What has been produced so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The users and products events are drawn from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Sessions live now.
    pub fn live_sessions(&self) -> usize {
        self.live.len()
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        self.clock += self.step;
        self.counts.events += 1;
        // A session idle for ten minutes ends first.
        if let Some(index) = self
            .live
            .iter()
            .position(|s| self.clock - s.last > IDLE_LIMIT_MICROS)
        {
            return self.end(index);
        }
        let index = self.pick_session();
        self.step_session(index)
    }

    /// Stays on the current session for 5-10 events, then switches: to an
    /// existing session 30 % of the time (or when the live set is full), to a
    /// new one otherwise.
    fn pick_session(&mut self) -> usize {
        if let Some(current) = self.current.filter(|_| self.streak > 0) {
            self.streak -= 1;
            return current;
        }
        self.streak = self.rng.random_range(5..=10) - 1;
        let existing = !self.live.is_empty()
            && (self.live.len() >= self.max_live || self.rng.random_bool(0.3));
        let index = if existing {
            self.rng.random_range(0..self.live.len())
        } else {
            self.start_session()
        };
        self.current = Some(index);
        index
    }

    fn start_session(&mut self) -> usize {
        let user = self.rng.random_range(0..self.catalog.users.len());
        let segment = self.catalog.users[user].segment;
        let (low, high) = segment.page_range();
        let (short, long) = segment.duration_range();
        let session = Session {
            id: format!("sess_{:012x}", self.rng.random_range(0..1u64 << 48)),
            user,
            segment,
            will_purchase: self.rng.random_bool(segment.purchase_intent()),
            device: draw_device(&mut self.rng),
            place: draw_place(&mut self.rng),
            state: State::New,
            started: self.clock,
            last: self.clock,
            target_events: self.rng.random_range(3 * low..=3 * high),
            target_micros: i64::from(self.rng.random_range(short..=long)) * 1_000_000,
            events: 0,
            pages: 0,
            products_viewed: 0,
            last_product: None,
            cart: Vec::new(),
        };
        self.counts.sessions += 1;
        self.live.push(session);
        self.live.len() - 1
    }

    /// True when the session should end now: past its target duration, or,
    /// once past half its target events, at random with a probability that
    /// grows from 0 to 0.4 as it reaches 150 % of its target.
    fn should_end(&mut self, index: usize) -> bool {
        let session = &self.live[index];
        if self.clock - session.started > session.target_micros {
            return true;
        }
        let half = f64::from(session.target_events) / 2.0;
        let events = f64::from(session.events);
        if events <= half {
            return false;
        }
        let span = 1.5 * f64::from(session.target_events) - half;
        let probability = 0.4 * ((events - half) / span).min(1.0);
        self.rng.random_bool(probability)
    }

    fn step_session(&mut self, index: usize) -> Event {
        let state = self.live[index].state;
        if state == State::Completed || (state != State::New && self.should_end(index)) {
            return self.end(index);
        }
        let roll: f64 = self.rng.random();
        let details = match state {
            State::New => {
                let session = &mut self.live[index];
                session.state = State::Browsing;
                Details::SessionStart {
                    user_segment: session.segment.name(),
                    will_purchase: session.will_purchase,
                }
            }
            State::Browsing if roll < 0.4 => self.page_view(index),
            State::Browsing if roll < 0.6 => self.search(),
            State::Browsing => self.product_viewed(index),
            State::Shopping => {
                let session = &self.live[index];
                if session.cart.is_empty() {
                    if session.products_viewed >= 2 && roll < 0.4 {
                        self.add_to_cart(index)
                    } else {
                        self.product_viewed(index)
                    }
                } else if roll < 0.6 {
                    let session = &mut self.live[index];
                    session.state = State::Checkout;
                    Details::CartViewed {
                        cart_total: session.cart_total(),
                        cart_item_count: session.cart_items(),
                    }
                } else if roll < 0.8 {
                    self.add_to_cart(index)
                } else {
                    self.product_viewed(index)
                }
            }
            State::Checkout => {
                if self.live[index].will_purchase && roll < 0.85 {
                    self.purchase(index)
                } else {
                    return self.end(index);
                }
            }
            State::Completed => unreachable!("completed sessions end above"),
        };
        self.emit(index, details)
    }

    fn page_view(&mut self, index: usize) -> Details {
        let page_type = PAGE_TYPES.choose(&mut self.rng).expect("page types");
        let session = &mut self.live[index];
        session.pages += 1;
        Details::PageView {
            page_type,
            pages_in_session: session.pages,
        }
    }

    fn search(&mut self) -> Details {
        Details::Search {
            search_query: SEARCH_QUERIES.choose(&mut self.rng).expect("queries"),
            results_count: self.rng.random_range(0..=250),
        }
    }

    fn product_viewed(&mut self, index: usize) -> Details {
        let product_index = self.rng.random_range(0..self.catalog.products.len());
        let product = &self.catalog.products[product_index];
        let session = &mut self.live[index];
        session.state = State::Shopping;
        session.products_viewed += 1;
        session.last_product = Some(product_index);
        Details::ProductViewed {
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            product_category: product.category,
            price: product.price,
            in_stock: product.in_stock,
            products_viewed_in_session: session.products_viewed,
        }
    }

    fn add_to_cart(&mut self, index: usize) -> Details {
        let quantity = *[1, 1, 1, 2, 3].choose(&mut self.rng).expect("quantities");
        let product_index = self.live[index]
            .last_product
            .unwrap_or_else(|| self.rng.random_range(0..self.catalog.products.len()));
        let product = &self.catalog.products[product_index];
        let session = &mut self.live[index];
        session.cart.push(Item {
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            price: product.price,
            quantity,
        });
        Details::AddToCart {
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            price: product.price,
            quantity,
            cart_total: session.cart_total(),
            cart_item_count: session.cart_items(),
        }
    }

    fn purchase(&mut self, index: usize) -> Details {
        let order_id = format!("ord_{:08x}", self.rng.random::<u32>());
        let payment_method = PAYMENT_METHODS
            .choose(&mut self.rng)
            .expect("payment methods");
        let session = &mut self.live[index];
        session.state = State::Completed;
        let subtotal = session.cart_total();
        let tax = money(subtotal * 0.08);
        let shipping = if subtotal < 50.0 { 15.0 } else { 0.0 };
        self.counts.purchases += 1;
        Details::Purchase {
            order_id,
            items: session.cart.clone(),
            subtotal,
            tax,
            shipping,
            total: money(subtotal + tax + shipping),
            payment_method,
        }
    }

    /// Ends session `index` with `session_end` and removes it.
    fn end(&mut self, index: usize) -> Event {
        let session = &self.live[index];
        let completed = session.state == State::Completed;
        let abandoned = !completed && !session.cart.is_empty();
        let details = Details::SessionEnd {
            duration_seconds: u64::try_from((self.clock - session.started) / 1_000_000)
                .unwrap_or(0),
            pages_viewed: session.pages,
            products_viewed: session.products_viewed,
            items_in_cart: session.cart_items(),
            purchase_completed: completed,
            cart_abandoned: abandoned,
            abandonment_stage: abandoned.then(|| session.state.name()),
        };
        let mut event = self.emit(index, details);
        event.session_state = if completed { "completed" } else { "abandoned" };
        self.live.swap_remove(index);
        self.current = None;
        event
    }

    fn emit(&mut self, index: usize, details: Details) -> Event {
        let event_id = format!("evt_{:012x}", self.rng.random_range(0..1u64 << 48));
        let session = &mut self.live[index];
        session.events += 1;
        session.last = self.clock;
        Event {
            event_id,
            event_type: event_type(&details),
            timestamp: timestamp(self.clock),
            session_id: session.id.clone(),
            user_id: self.catalog.users[session.user].id.clone(),
            session_state: session.state.name(),
            device: session.device.into(),
            geo: session.place.into(),
            details,
        }
    }
}

fn event_type(details: &Details) -> &'static str {
    match details {
        Details::SessionStart { .. } => "session_start",
        Details::PageView { .. } => "page_view",
        Details::Search { .. } => "search",
        Details::ProductViewed { .. } => "product_viewed",
        Details::AddToCart { .. } => "add_to_cart",
        Details::CartViewed { .. } => "cart_viewed",
        Details::Purchase { .. } => "purchase",
        Details::SessionEnd { .. } => "session_end",
    }
}

/// Rounds to cents.
fn money(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// ISO-8601 in UTC with a `+00:00` offset; microseconds only when non-zero,
/// as the reference wrote them.
fn timestamp(micros: i64) -> String {
    let time = DateTime::from_timestamp_micros(micros).expect("the clock stays in range");
    if micros % 1_000_000 == 0 {
        time.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

#[cfg(test)]
mod tests;
