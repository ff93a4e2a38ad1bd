pub mod auth;
pub mod config;
pub mod domain;
pub mod service;
pub mod store;
