//! The source side: HTTP access to a tenant ([`client`]), parsing of its
//! pages ([`page`]), and the poller that drives the cursor ([`poller`]).

pub mod client;
pub mod page;
pub mod poller;
