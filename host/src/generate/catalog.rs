//! The generator's fixed world: users with a segment drawn once, products
//! in four categories, devices and places. All drawn from the seed.

use rand::Rng;
use rand::seq::IndexedRandom;

/// A user's segment (semantics.md §2), with what it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// 40 % of users.
    New,
    /// 45 %.
    Returning,
    /// 10 %.
    Vip,
    /// 5 %.
    Churned,
}

impl Segment {
    /// Draws a segment with the reference's shares.
    pub fn draw(rng: &mut impl Rng) -> Self {
        match rng.random_range(0..100) {
            0..40 => Self::New,
            40..85 => Self::Returning,
            85..95 => Self::Vip,
            _ => Self::Churned,
        }
    }

    /// The name events carry.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Returning => "returning",
            Self::Vip => "vip",
            Self::Churned => "churned",
        }
    }

    /// Probability that a session of this segment intends to buy.
    pub fn purchase_intent(self) -> f64 {
        match self {
            Self::New => 0.10,
            Self::Returning => 0.20,
            Self::Vip => 0.50,
            Self::Churned => 0.05,
        }
    }

    /// Target session length in seconds (low, high).
    pub fn duration_range(self) -> (u32, u32) {
        match self {
            Self::New => (120, 300),
            Self::Returning => (300, 600),
            Self::Vip => (180, 480),
            Self::Churned => (60, 180),
        }
    }

    /// The segment's page range (low, high); a session targets between
    /// three times the low and three times the high end in events.
    pub fn page_range(self) -> (u32, u32) {
        match self {
            Self::New => (3, 10),
            Self::Returning => (5, 15),
            Self::Vip => (4, 12),
            Self::Churned => (2, 6),
        }
    }
}

/// A user of the shop.
#[derive(Debug, Clone)]
pub struct User {
    /// `user_00042`.
    pub id: String,
    /// Drawn once.
    pub segment: Segment,
}

/// A product of the catalogue.
#[derive(Debug, Clone)]
pub struct Product {
    /// `prod_0007`.
    pub id: String,
    /// A readable name.
    pub name: String,
    /// One of the four categories.
    pub category: &'static str,
    /// The subcategory.
    pub subcategory: &'static str,
    /// The brand.
    pub brand: &'static str,
    /// Price in the category's range, two decimals.
    pub price: f64,
    /// About 5 % are out of stock.
    pub in_stock: bool,
}

/// A device, drawn once per session.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    /// desktop, mobile, tablet.
    pub kind: &'static str,
    /// The operating system.
    pub os: &'static str,
    /// The browser.
    pub browser: &'static str,
}

/// A place, drawn once per session.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// ISO country code.
    pub country: &'static str,
    /// City.
    pub city: &'static str,
    /// IANA time zone.
    pub timezone: &'static str,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

struct Category {
    name: &'static str,
    price: (f64, f64),
    subcategories: &'static [&'static str],
    brands: &'static [&'static str],
    nouns: &'static [&'static str],
}

const CATEGORIES: [Category; 4] = [
    Category {
        name: "electronics",
        price: (50.0, 3000.0),
        subcategories: &["laptops", "phones", "audio", "cameras"],
        brands: &["Voltix", "Nimbus", "Arcway", "Lumen"],
        nouns: &["Laptop", "Phone", "Headphones", "Camera", "Speaker"],
    },
    Category {
        name: "clothing",
        price: (15.0, 300.0),
        subcategories: &["shirts", "shoes", "jackets", "accessories"],
        brands: &["Northline", "Mira", "Thread & Co", "Kestrel"],
        nouns: &["Shirt", "Sneakers", "Jacket", "Scarf", "Jeans"],
    },
    Category {
        name: "home",
        price: (20.0, 2000.0),
        subcategories: &["kitchen", "furniture", "decor", "garden"],
        brands: &["Hearth", "Oakly", "Casa Nova", "Greenfold"],
        nouns: &["Espresso Machine", "Sofa", "Lamp", "Rug", "Planter"],
    },
    Category {
        name: "sports",
        price: (10.0, 500.0),
        subcategories: &["running", "cycling", "fitness", "outdoor"],
        brands: &["Stride", "Peakform", "Velo", "Summit"],
        nouns: &[
            "Running Shoes",
            "Bike Helmet",
            "Yoga Mat",
            "Tent",
            "Dumbbells",
        ],
    },
];

const ADJECTIVES: [&str; 8] = [
    "Classic",
    "Pro",
    "Ultra",
    "Compact",
    "Premium",
    "Eco",
    "Smart",
    "Essential",
];

const DEVICES: [Device; 6] = [
    Device {
        kind: "desktop",
        os: "Windows",
        browser: "Chrome",
    },
    Device {
        kind: "desktop",
        os: "macOS",
        browser: "Safari",
    },
    Device {
        kind: "mobile",
        os: "iOS",
        browser: "Safari",
    },
    Device {
        kind: "mobile",
        os: "Android",
        browser: "Chrome",
    },
    Device {
        kind: "tablet",
        os: "iPadOS",
        browser: "Safari",
    },
    Device {
        kind: "desktop",
        os: "Linux",
        browser: "Firefox",
    },
];

const PLACES: [Place; 8] = [
    Place {
        country: "US",
        city: "New York",
        timezone: "America/New_York",
        lat: 40.7128,
        lon: -74.006,
    },
    Place {
        country: "US",
        city: "San Francisco",
        timezone: "America/Los_Angeles",
        lat: 37.7749,
        lon: -122.4194,
    },
    Place {
        country: "GB",
        city: "London",
        timezone: "Europe/London",
        lat: 51.5074,
        lon: -0.1278,
    },
    Place {
        country: "DE",
        city: "Berlin",
        timezone: "Europe/Berlin",
        lat: 52.52,
        lon: 13.405,
    },
    Place {
        country: "FR",
        city: "Paris",
        timezone: "Europe/Paris",
        lat: 48.8566,
        lon: 2.3522,
    },
    Place {
        country: "JP",
        city: "Tokyo",
        timezone: "Asia/Tokyo",
        lat: 35.6762,
        lon: 139.6503,
    },
    Place {
        country: "BR",
        city: "São Paulo",
        timezone: "America/Sao_Paulo",
        lat: -23.5505,
        lon: -46.6333,
    },
    Place {
        country: "AU",
        city: "Sydney",
        timezone: "Australia/Sydney",
        lat: -33.8688,
        lon: 151.2093,
    },
];

/// Search terms users type.
pub const SEARCH_QUERIES: [&str; 10] = [
    "laptop",
    "running shoes",
    "coffee",
    "jacket",
    "headphones",
    "sofa",
    "yoga",
    "gift",
    "camera",
    "sale",
];

/// Page types of `page_view`.
pub const PAGE_TYPES: [&str; 4] = ["home", "category", "search_results", "about"];

/// Payment methods of `purchase`.
pub const PAYMENT_METHODS: [&str; 4] = ["credit_card", "paypal", "apple_pay", "bank_transfer"];

/// The users and products a run draws from.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Every user, with a fixed segment.
    pub users: Vec<User>,
    /// Every product.
    pub products: Vec<Product>,
}

impl Catalog {
    /// `users` users and `products` products drawn from `rng`.
    pub fn generate(rng: &mut impl Rng, users: usize, products: usize) -> Self {
        let users = (0..users)
            .map(|i| User {
                id: format!("user_{i:05}"),
                segment: Segment::draw(rng),
            })
            .collect();
        let products = (0..products)
            .map(|i| {
                let category = &CATEGORIES[i % CATEGORIES.len()];
                let (low, high) = category.price;
                let noun = category.nouns.choose(rng).expect("nouns");
                let adjective = ADJECTIVES.choose(rng).expect("adjectives");
                let brand = category.brands.choose(rng).expect("brands");
                Product {
                    id: format!("prod_{i:04}"),
                    name: format!("{brand} {adjective} {noun}"),
                    category: category.name,
                    subcategory: category.subcategories.choose(rng).expect("subcategories"),
                    brand,
                    price: (rng.random_range(low..high) * 100.0).round() / 100.0,
                    in_stock: rng.random_bool(0.95),
                }
            })
            .collect();
        Self { users, products }
    }
}

/// Draws a device.
pub fn draw_device(rng: &mut impl Rng) -> Device {
    *DEVICES.choose(rng).expect("devices")
}

/// Draws a place.
pub fn draw_place(rng: &mut impl Rng) -> Place {
    *PLACES.choose(rng).expect("places")
}
