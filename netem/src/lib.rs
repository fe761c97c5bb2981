//! `tgp-netem`: impaired paths for tgp's tests and benchmarks.
//!
//! The `netem/link` script builds two network namespaces joined through a
//! third; where the kernel has no `sch_netem`, the `tgp-impair` binary from
//! this crate bridges the middle namespace's two interfaces at layer 2 and
//! impairs each direction. The parts:
//!
//! - [`spec`]: what one direction should do, and parsing of `--loss 10%`,
//!   `--up-delay 25ms`, `--rate 20mbit`, … (values parsed by `tgp-units`).
//! - [`model`]: one direction as a pure function of virtual time: the
//!   simulator's link model (`tgp_sim::link`: rate and drop-tail queue, then
//!   loss, then delay/jitter, reorder, duplicate, from a seeded ChaCha8
//!   stream) and the frames waiting for their delivery time.
//! - [`bridge`]: the threads that move frames between two interfaces
//!   through the model, timed with nanosecond condition-variable waits.
//! - [`sys`]: the few Linux calls (AF_PACKET sockets, timer slack, signals).

pub mod bridge;
pub mod model;
pub mod spec;
pub mod sys;
