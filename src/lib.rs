//! A real-time chat service: Socket.IO and REST on one port, a drop-in replacement for the
//! Node.js chat service. See README.md for the architecture and `app` for how it is assembled.

pub mod admin;
pub mod agent;
pub mod app;
pub mod archive;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod domain;
pub mod files;
pub mod healthcheck;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod periodic;
pub mod presence;
pub mod ratelimit;
pub mod realtime;
pub mod sequence;
pub mod service;
pub mod store;
