//! Shoppers.

use crate::{Timestamp, UserId};

/// A shopper as a shop or an importer describes them. `external_id` is the shop's own id.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub external_id: String,
    pub display_name: Option<String>,
    pub location: Option<String>,
    pub age: Option<i32>,
    /// Other attributes (gender, occupation, …) as a JSON object text.
    pub attributes: Option<String>,
}

/// A stored shopper.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub external_id: String,
    pub display_name: Option<String>,
    pub location: Option<String>,
    pub age: Option<i32>,
    pub attributes: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
