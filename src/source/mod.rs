//! The source side: HTTP access to a tenant ([`client`]), parsing of its
//! pages ([`page`]), the poller that drives the cursor ([`poller`]), how
//! many pages it fetches ahead ([`depth`]) and the progress it reports
//! during a backfill ([`progress`]).

pub mod client;
pub mod depth;
pub mod page;
pub mod poller;
pub mod progress;
pub mod start;
