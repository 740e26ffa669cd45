//! fxfer: fast, safe, scriptable file transfer over a small binary TCP
//! protocol. The binary (`src/main.rs`) is a thin layer over this library;
//! integration tests and benchmarks use the same types.

pub mod cli;
pub mod client;
pub mod complete;
pub mod config;
pub mod error;
pub mod human;
pub mod interrupt;
pub mod logging;
pub mod paths;
pub mod progress;
pub mod protocol;
pub mod ratelimit;
pub mod select;
pub mod server;
pub mod shell;
pub mod transfer;
pub mod transport;
