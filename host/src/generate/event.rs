//! The events the generator writes, field for field as semantics.md §1
//! lists them.

use serde::Serialize;

use super::catalog::{Device, Place};

/// One e-commerce event. Serialises to the reference's JSON shape: common
/// fields first, then the fields of its type.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `evt_` and 12 hex digits.
    pub event_id: String,
    /// One of the eight types.
    pub event_type: &'static str,
    /// ISO-8601 UTC with a `+00:00` offset, microseconds when non-zero.
    pub timestamp: String,
    /// `sess_` and 12 hex digits; also the Kafka key.
    pub session_id: String,
    /// `user_00042`.
    pub user_id: String,
    /// The session's state after this event.
    pub session_state: &'static str,
    /// Drawn once per session.
    pub device: DeviceJson,
    /// Drawn once per session.
    pub geo: PlaceJson,
    /// The fields of this event type.
    #[serde(flatten)]
    pub details: Details,
}

/// `device` as events carry it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceJson {
    #[serde(rename = "type")]
    kind: &'static str,
    os: &'static str,
    browser: &'static str,
}

impl From<Device> for DeviceJson {
    fn from(device: Device) -> Self {
        Self {
            kind: device.kind,
            os: device.os,
            browser: device.browser,
        }
    }
}

/// `geo` as events carry it.
#[derive(Debug, Clone, Serialize)]
pub struct PlaceJson {
    country: &'static str,
    city: &'static str,
    timezone: &'static str,
    lat: f64,
    lon: f64,
}

impl From<Place> for PlaceJson {
    fn from(place: Place) -> Self {
        Self {
            country: place.country,
            city: place.city,
            timezone: place.timezone,
            lat: place.lat,
            lon: place.lon,
        }
    }
}

/// An item of a purchase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    /// The product.
    pub product_id: String,
    /// Its name.
    pub product_name: String,
    /// Unit price.
    pub price: f64,
    /// How many.
    pub quantity: u32,
}

/// The fields specific to each event type.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Details {
    /// `session_start`: the only event carrying the segment.
    SessionStart {
        /// The user's segment.
        user_segment: &'static str,
        /// Whether the session intends to buy.
        will_purchase: bool,
    },
    /// `page_view`.
    PageView {
        /// home, category, search_results, about.
        page_type: &'static str,
        /// Running count in the session.
        pages_in_session: u32,
    },
    /// `search`.
    Search {
        /// What was typed.
        search_query: &'static str,
        /// Hits.
        results_count: u32,
    },
    /// `product_viewed`.
    ProductViewed {
        /// The product.
        product_id: String,
        /// Its name.
        product_name: String,
        /// Its category.
        product_category: &'static str,
        /// Its price.
        price: f64,
        /// Whether it can be bought.
        in_stock: bool,
        /// Running count in the session.
        products_viewed_in_session: u32,
    },
    /// `add_to_cart`.
    AddToCart {
        /// The product added.
        product_id: String,
        /// Its name.
        product_name: String,
        /// Unit price.
        price: f64,
        /// How many were added.
        quantity: u32,
        /// The cart's value after adding.
        cart_total: f64,
        /// Items in the cart after adding.
        cart_item_count: u32,
    },
    /// `cart_viewed`.
    CartViewed {
        /// The cart's value.
        cart_total: f64,
        /// Items in the cart.
        cart_item_count: u32,
    },
    /// `purchase`: no cart fields.
    Purchase {
        /// `ord_` and 8 hex digits.
        order_id: String,
        /// What was bought.
        items: Vec<Item>,
        /// Sum of the items.
        subtotal: f64,
        /// 8 % of the subtotal.
        tax: f64,
        /// 15.00 below a 50.00 subtotal, else 0.
        shipping: f64,
        /// subtotal + tax + shipping.
        total: f64,
        /// How it was paid.
        payment_method: &'static str,
    },
    /// `session_end`.
    SessionEnd {
        /// Seconds from the first to the last event.
        duration_seconds: u64,
        /// Page views in the session.
        pages_viewed: u32,
        /// Product views in the session.
        products_viewed: u32,
        /// Items in the cart at the end.
        items_in_cart: u32,
        /// Whether the session bought.
        purchase_completed: bool,
        /// Whether it left a non-empty cart behind.
        cart_abandoned: bool,
        /// Where an abandoned cart was left: shopping or checkout.
        abandonment_stage: Option<&'static str>,
    },
}
