//! The sending side of the data plane: the send queue and its queue
//! manager ([`queue`], [`aqm`]), FEC groups and the repair policy
//! ([`groups`], [`repair`]), packets in flight ([`flight`]) and pacing
//! ([`pacing`]).

pub(crate) mod aqm;
pub(crate) mod flight;
pub(crate) mod groups;
pub(crate) mod pacing;
pub(crate) mod queue;
pub(crate) mod repair;
