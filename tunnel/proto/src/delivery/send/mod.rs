//! The sending side of the data plane: the send queue and its queue
//! manager ([`queue`], [`aqm`]), the sliding window of sources and the
//! repair policy ([`window`], [`repair`]), packets in flight ([`flight`])
//! and pacing ([`pacing`]).

pub(crate) mod aqm;
pub(crate) mod flight;
pub(crate) mod pacing;
pub(crate) mod queue;
pub(crate) mod repair;
pub(crate) mod window;
