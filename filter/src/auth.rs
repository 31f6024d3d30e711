//! Who is calling: signing keys and their claim rules (`keys`), JWTs and API keys verified
//! into an `Identity` with revocation applied (`token`), the API-key format (`apikey`), and
//! the per-worker cache of verified credentials (`cache`).

pub mod apikey;
pub mod cache;
pub mod credentials;
pub mod jws;
pub mod keys;
pub mod token;
