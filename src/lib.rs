pub mod auth;
pub mod config;
pub mod domain;
pub mod store;
