//! ToTG and UoTG adapters: which flow an IP packet belongs to and which
//! delivery class it gets. Not built yet (issue 4); this crate is empty on
//! purpose.
