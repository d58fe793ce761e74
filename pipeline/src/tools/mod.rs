//! What the one-shot commands share: checking events against the contracts ([`validate`]),
//! reading JSON Lines ([`lines`]) and the billing export ([`billing`]).

pub mod billing;
pub mod lines;
pub mod validate;
