//! `tgp-netem`: impaired paths for tgp's tests and benchmarks.
//!
//! The `netem/link` script builds two network namespaces joined through a
//! third; where the kernel has no `sch_netem`, the `tgp-impair` binary from
//! this crate bridges the middle namespace's two interfaces at layer 2 and
//! impairs each direction. The parts:
//!
//! - [`spec`]: what one direction should do, and parsing of `--loss 10%`,
//!   `--up-delay 25ms`, `--rate 20mbit`, ….
//! - [`model`]: the impairment as a pure function of virtual time (rate and
//!   drop-tail queue, then loss, then delay/jitter, reorder, duplicate).
//! - [`rng`]: the seeded generator behind every random choice.
//! - [`bridge`]: the threads that move frames between two interfaces
//!   through the model, timed with nanosecond condition-variable waits.
//! - [`sys`]: the few Linux calls (AF_PACKET sockets, timer slack, signals).

pub mod bridge;
pub mod model;
pub mod rng;
pub mod spec;
pub mod sys;
